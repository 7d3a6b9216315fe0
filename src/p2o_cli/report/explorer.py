"""What the report page shows of the prompt search, read from a run directory as plain data.

Per epoch that ran GEPA (``epoch-E/``): every template it kept with its parent, dev scores, the
hard problems it solved and those the set cover assigned it to, whether it is on the Pareto
front; every child it refused and why (``gepa-state.json``'s proposals); and the search's
budget. Per run: a sample of the first epoch's hard problems, with their plain and templated
rollouts at the epoch before templates, the first epoch with them, and the last epoch.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..files.records import Assignment, Hard, Template, iter_json_lines, read_records
from ..gepa.pareto import front_templates, mean_score
from ..gepa.state import load_state

# Long texts are cut for the page (head and tail kept: a math response ends with its answer).
MAX_RESPONSE_CHARS = 2400
MAX_PROBLEM_CHARS = 1500


def clip(text: str, limit: int) -> str:
    """``text`` if short enough, else its start and end around a note of what was left out."""
    if len(text) <= limit:
        return text
    head, tail = limit // 3, limit - limit // 3
    return f"{text[:head]}\n… [{len(text) - head - tail:,} characters not shown] …\n{text[-tail:]}"


def epoch_dirs(root: Path) -> list[tuple[int, Path]]:
    found = ((p.name.removeprefix("epoch-"), p) for p in root.glob("epoch-*") if p.is_dir())
    return sorted((int(n), p) for n, p in found if n.isdigit())


def _assigned(edir: Path) -> dict[str, list[str]]:
    """template id -> the hard problems the set cover gave it to."""
    path = edir / "assignments.jsonl"
    out: dict[str, list[str]] = {}
    for assignment in read_records(path, Assignment) if path.is_file() else []:
        for template_id in dict.fromkeys(assignment.template_ids):
            out.setdefault(template_id, []).append(assignment.id)
    return out


def _template(t: Template, front: set[str], assigned: dict[str, list[str]]) -> dict[str, Any]:
    return {"id": t.template_id, "parent": t.parent_id, "iteration": t.iteration, "text": t.text,
            "dev_solved": [pid for pid, score in zip(t.dev_ids, t.dev_scores) if score > 0],
            "dev_mean": mean_score(t), "train_solved": t.train_solved, "front": t.template_id in front,
            "assigned": assigned.get(t.template_id, [])}


def gepa_epoch(edir: Path, epoch: int, problems: dict[str, dict[str, str]]) -> dict[str, Any] | None:
    """One epoch's search, or None if GEPA did not run there. Adds its hard problems to ``problems``."""
    state_path, templates_path = edir / "gepa-state.json", edir / "templates.jsonl"
    if not state_path.is_file() and not templates_path.is_file():
        return None
    state = load_state(state_path) if state_path.is_file() else None
    templates = read_records(templates_path, Template) if templates_path.is_file() else state.templates  # type: ignore[union-attr]
    hard_path = edir / "hard.jsonl"
    hard = read_records(hard_path, Hard) if hard_path.is_file() else []
    for h in hard:
        problems.setdefault(h.id, {"problem": clip(h.problem, MAX_PROBLEM_CHARS), "answer": h.answer})
    front = {t.template_id for t in front_templates(templates)} if templates else set()
    assigned = _assigned(edir)
    last = _last_metrics(edir / "gepa-metrics.jsonl")
    proposals = [{"iteration": p.iteration, "parent": p.parent_id, "outcome": p.outcome, "minibatch": p.minibatch,
                  "parent_score": p.parent_score, "child_score": p.child_score, "id": p.template_id,
                  "text": "" if p.outcome == "kept" else p.text} for p in (state.proposals if state else [])]
    return {
        "epoch": epoch,
        "hard": len(hard),
        "dev_ids": templates[0].dev_ids if templates else [],
        "train_ids": state.train_ids if state else [],
        "templates": [_template(t, front, assigned) for t in templates],
        "proposals": proposals,
        # A search saved before proposals were recorded has none, though it made some.
        "proposals_recorded": state is not None and (bool(state.proposals) or state.counters["reflections"] == 0),
        "iterations": state.iteration if state else last.get("gepa/iteration"),
        "spent": state.spent if state else last.get("gepa/spent"),
        "budget": last.get("gepa/budget"),
        "counters": state.counters if state else {},
    }


def _last_metrics(path: Path) -> dict[str, Any]:
    rows = [row for _, row in iter_json_lines(path, torn_tail=True)] if path.is_file() else []
    return rows[-1] if rows else {}


def _rollouts(edir: Path, ids: set[str]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """The epoch's rollouts of ``ids`` (its batch files read line by line, the others skipped), and
    the text of each template they used."""
    out: dict[str, list[dict[str, Any]]] = {}
    texts: dict[str, str] = {}
    for path in sorted(edir.glob("rollouts-*.jsonl")):
        for _, row in iter_json_lines(path):
            if row.get("id") not in ids:
                continue
            template_id = row.get("template_id") if row.get("template") else None
            if template_id is not None:
                texts[template_id] = row["template"]
            out.setdefault(row["id"], []).append({
                "k": row.get("k"), "template_id": template_id, "reward": row.get("reward"), "pred": row.get("pred"),
                "finish_reason": row.get("finish_reason"), "n_tokens": row.get("n_tokens"),
                "response": clip(row.get("response", ""), MAX_RESPONSE_CHARS)})
    return out, texts


def rollout_samples(root: Path, searched: Iterable[dict[str, Any]], count: int, seed: int = 0) -> dict[str, Any]:
    """Up to ``count`` hard problems of the first search, at the epoch they were hard (plain rollouts
    only), the first epoch with their templates, and the last epoch."""
    epochs = dict(epoch_dirs(root))
    first = next(iter(searched), None)
    if first is None or count <= 0:
        return {"epochs": [], "problems": []}
    # Problems given a real template (not only the empty seed) show what the templates did.
    assigned = [sorted({pid for t in first["templates"] for pid in t["assigned"] if t["text"] or not real})
                for real in (True, False)]
    candidates = assigned[0] or assigned[1]
    chosen = sorted(random.Random(seed).sample(candidates, min(count, len(candidates))))
    shown = sorted({e for e in (first["epoch"], first["epoch"] + 1, max(epochs)) if e in epochs})
    per_epoch = {e: _rollouts(epochs[e], set(chosen)) for e in shown}
    return {"epochs": shown, "templates": {str(e): texts for e, (_, texts) in per_epoch.items()},
            "problems": [{"id": pid, "rollouts": {str(e): sorted(rows.get(pid, []), key=lambda r: r["k"])
                                                  for e, (rows, _) in per_epoch.items()}} for pid in chosen]}


def run_explorer(name: str, label: str, root: Path, samples: int) -> dict[str, Any] | None:
    """Everything the page shows of one run's prompt search (None if it never ran GEPA)."""
    problems: dict[str, dict[str, str]] = {}
    searched = [s for e, path in epoch_dirs(root) if (s := gepa_epoch(path, e, problems)) is not None]
    if not searched:
        return None
    return {"name": name, "label": label, "epochs": searched, "problems": problems,
            "samples": rollout_samples(root, searched, samples)}
