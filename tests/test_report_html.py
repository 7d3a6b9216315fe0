"""`p2o report --html`: one self-contained page, opened in a real headless Chromium.

The run directory comes from a real GEPA search (the scripted world of test_gepa_search: a
problem is solved iff its prompt names its category) and the real set cover, wrapped in the
files ``p2o run`` writes: metrics, config, per-epoch hard sets, assignments and rollouts.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from browser import Browser, find_chromium
from helpers import BoxScorer, ChatTokenizer, SkillEngine, make_hard
from p2o_cli.cli import app
from p2o_cli.files.records import Rollout, Template, read_records, write_records
from p2o_cli.gepa.assign import assign_templates
from p2o_cli.gepa.config import GepaConfig
from p2o_cli.gepa.search import run_gepa
from p2o_cli.gepa.state import load_state


class CategoryReflector:
    """Names the category of the parent's first failure; every third answer repeats the parent
    (a duplicate) and every fourth adds nothing useful (not better than its parent), so the
    search records kept and refused children alike."""

    def __init__(self) -> None:
        self.calls = 0

    def propose(self, requests):
        out = []
        for req in requests:
            self.calls += 1
            failed = next(f for f in req.feedback if not f.correct)
            category = re.match(r"\[(\w+)\]", failed.problem).group(1)
            if self.calls % 3 == 0 and req.parent_text:
                out.append(req.parent_text)
            elif self.calls % 4 == 0:
                out.append(f"{req.parent_text} Think twice.".strip())
            else:
                out.append(f"{req.parent_text} use {category}.".strip())
        return out


def rollout(pid: str, k: int, reward: float, template: Template | None) -> Rollout:
    text = template.text if template is not None and template.text else None
    return Rollout(id=pid, k=k, prompt=f"{text or ''} {pid}", response=f"So the number is \\boxed{{{int(reward)}}}",
                   reward=reward, pred=str(int(reward)), finish_reason="stop", n_tokens=9,
                   template_id=template.template_id if text else None, template=text)


def make_run(root: Path) -> Path:
    """Epoch 0: plain rollouts, a hard set, GEPA and the set cover; epoch 1: templated rollouts."""
    run = root / "p2o"
    edir = run / "epoch-0"
    edir.mkdir(parents=True)
    hard = make_hard(16)
    cfg = GepaConfig(width=3, minibatch=2, dev_size=6, budget=120, seed=3, gepa_max_new_tokens=16)
    result = run_gepa(hard, SkillEngine(hard), ChatTokenizer(), CategoryReflector(), BoxScorer(), cfg,
                      state_path=edir / "gepa-state.json", metrics_path=edir / "gepa-metrics.jsonl")
    assigned = assign_templates([h.id for h in hard], result.templates, 2, seed=1)
    write_records(edir / "hard.jsonl", hard)
    write_records(edir / "templates.jsonl", result.templates)
    write_records(edir / "assignments.jsonl", assigned.assignments)
    write_records(edir / "rollouts-0000.jsonl", [rollout(h.id, k, 0.0, None) for h in hard for k in range(2)])
    (run / "epoch-1").mkdir()
    by_id = {t.template_id: t for t in result.templates}
    templated = [rollout(a.id, k, float(bool(by_id[t].text)), by_id[t]) for a in assigned.assignments
                 for k, t in enumerate(a.template_ids)]
    write_records(run / "epoch-1" / "rollouts-0000.jsonl", templated)
    rows = [{"training/step": 0, "epoch": 0, "eval/toy-hard/accuracy": 0.0}]
    rows += [{"training/step": s, "epoch": (s - 1) // 2, "rollout/plain_reward_mean": 0.1 * s,
              "rollout/templated_reward_mean": 0.5 if s > 2 else 0.0, "rollout/templated_frac": 0.5 if s > 2 else 0.0,
              "actor/entropy": 1 - 0.1 * s, "actor/pg_clipfrac": 0.0} for s in range(1, 5)]
    rows += [{"epoch": 0, "training/step": 2, "epoch/hard_count": 16},
             {"epoch": 0, "training/step": 2, "gepa/templates": len(result.templates),
              "gepa/dev_coverage": 0.5, "gepa/rollouts_spent": result.spent},
             {"epoch": 1, "training/step": 4, "epoch/hard_count": 9},
             {"training/step": 4, "epoch": 1, "eval/toy-hard/accuracy": 25.0}]
    (run / "metrics.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (run / "config.json").write_bytes(orjson.dumps({"name": "p2o", "seed": 3, "gepa": {"budget": cfg.budget},
                                                    "mining": {"tau": 0.2}}))
    return run


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("html")
    run = make_run(root)
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(root / "report"), "--html", "--samples", "4"])
    assert result.exit_code == 0, result.output
    return run, root / "report" / "report.html"


def page_data(html: str) -> list[dict]:
    raw = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', html, re.S).group(1)
    return orjson.loads(raw.replace("<\\/", "</"))


def test_the_page_is_one_self_contained_file(report) -> None:
    _, page = report
    html = page.read_text()
    # Nothing to fetch: no external scripts, styles or images, every figure inline.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script src" not in html and 'rel="stylesheet"' not in html
    assert html.count('src="data:image/svg+xml;base64,') == 5  # reward, hard, eval, dynamics, GEPA
    assert page.stat().st_size < 2_000_000
    # The run's configuration is on the page.
    assert "&quot;budget&quot;: 120" in html


def test_the_explorer_data_is_the_search_as_recorded(report) -> None:
    run, page = report
    [explorer] = page_data(page.read_text())
    [epoch] = explorer["epochs"]
    templates = read_records(run / "epoch-0" / "templates.jsonl", Template)
    assert [(t["id"], t["parent"], t["dev_solved"]) for t in epoch["templates"]] == [
        (t.template_id, t.parent_id, [i for i, s in zip(t.dev_ids, t.dev_scores) if s > 0]) for t in templates]
    state = load_state(run / "epoch-0" / "gepa-state.json")
    assert [p["outcome"] for p in epoch["proposals"]] == [p.outcome for p in state.proposals]
    assert {"kept", "duplicate", "not_better"} <= {p["outcome"] for p in epoch["proposals"]}
    assert any(t["front"] for t in epoch["templates"]) and epoch["budget"] == 120
    assigned = sum(len(t["assigned"]) for t in epoch["templates"])
    assert assigned >= 16  # every hard problem has at least one template
    samples = explorer["samples"]
    assert samples["epochs"] == [0, 1] and len(samples["problems"]) == 4
    for item in samples["problems"]:
        assert len(item["rollouts"]["0"]) == 2 and all(r["template_id"] is None for r in item["rollouts"]["0"])
        assert len(item["rollouts"]["1"]) == 2


@pytest.mark.timeout(180)
def test_the_page_renders_in_headless_chromium(report, tmp_path) -> None:
    executable = find_chromium()
    if executable is None:
        pytest.skip("no chromium on PATH: `apt-get install chromium` (Debian) to run the page test")
    run, page = report
    templates = read_records(run / "epoch-0" / "templates.jsonl", Template)
    refused = [p for p in load_state(run / "epoch-0" / "gepa-state.json").proposals if p.outcome != "kept"]
    with Browser(executable) as browser:
        browser.open(page.as_uri())
        assert browser.evaluate("document.getElementById('explorer-root').dataset.ready") == "true"
        rows = browser.evaluate("Array.from(document.querySelectorAll('.epoch-view[data-epoch=\"0\"] "
                                "tr.template-row')).map(r => Array.from(r.cells).map(c => c.textContent))")
        assert len(rows) == len(templates)
        for cells, t in zip(rows, templates):
            solved = sum(s > 0 for s in t.dev_scores)
            assert cells[:4] == [t.template_id, t.parent_id or "–", str(t.iteration), f"{solved}/{len(t.dev_ids)} dev"]
        assert browser.evaluate("document.querySelectorAll('tr.proposal-row').length") == len(refused)
        nodes = browser.evaluate("document.querySelectorAll('.graph .node').length")
        assert nodes == len(templates) + len(refused)
        # Clicking a template shows its text and the problems the set cover gave it.
        last = templates[-1]
        browser.evaluate(f"document.querySelector('tr.template-row[data-id=\"{last.template_id}\"]').click()")
        detail = browser.evaluate("document.querySelector('.detail').textContent")
        assert f"Template {last.template_id}" in detail and last.text in detail and "set cover assigned" in detail
        assert browser.evaluate("document.querySelectorAll('.samples .problem').length") == 4
        shot = browser.screenshot(tmp_path / "explorer.png", "#explorer")
        assert browser.problems == [], browser.problems
        assert browser.non_local_requests() == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
