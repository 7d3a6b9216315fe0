from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree

import orjson
import pytest
from matplotlib.colors import to_hex
from matplotlib.legend import Legend
from typer.testing import CliRunner

from p2o_cli.cli import app
from p2o_cli.errors import RecordError
from p2o_cli.report.figures import comparison_table, load_run, run_charts, smooth
from p2o_cli.report.style import (
    PALETTE,
    assign_styles,
    data_limits,
    dodge,
    flat_note,
    grid,
    identical_to,
    paper_style,
    render,
    spacing,
    thin_ticks,
)


def fake_run(root: Path, name: str, hard: list[int], final_acc: float, varied: bool = False) -> Path:
    """Two epochs of two steps; ``varied``: clip fraction and truncation change from step to step."""
    run = root / name
    run.mkdir()
    rows = [{"training/step": 0, "epoch": 0, "eval/toy-hard/accuracy": 1.0}]
    for step in range(1, 5):
        rows.append({"training/step": step, "epoch": (step - 1) // 2, "critic/rewards/mean": step / 10,
                     "rollout/plain_reward_mean": step / 20, "rollout/templated_reward_mean": 0.0 if step < 3 else 0.5,
                     "rollout/templated_frac": 0.0 if step < 3 else 0.25, "actor/ppo_kl": 0.001 * step,
                     "actor/pg_clipfrac": 0.01, "actor/entropy": 1.0 - step / 10, "response_length/mean": 20.0 + step,
                     "rollout/truncated_frac": 0.0})
        if varied:
            rows[-1].update({"actor/pg_clipfrac": 0.01 * step, "rollout/truncated_frac": 0.1 / step})
    rows += [{"epoch": e, "training/step": 2 * (e + 1), "epoch/hard_count": h} for e, h in enumerate(hard)]
    rows.append({"epoch": 0, "training/step": 2, "gepa/dev_coverage": hard[-1] / 20, "gepa/templates": hard[-1],
                 "gepa/rollouts_spent": 600})
    rows.append({"training/step": 4, "epoch": 1, "eval/toy-hard/accuracy": final_acc})
    (run / "metrics.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (run / "config.json").write_bytes(orjson.dumps({"name": name}))
    return run


def test_table_reports_final_eval_hard_trend_and_reward(tmp_path) -> None:
    runs = [load_run(fake_run(tmp_path, "p2o", [10, 4], 62.5)), load_run(fake_run(tmp_path, "grpo", [10, 9], 12.0))]
    table = comparison_table(runs)
    lines = table.strip().splitlines()
    assert lines[0] == "| run | toy-hard | hard (first → last) | train reward (last) |"
    assert lines[2] == "| p2o | 62.5 | 10 → 4 | 0.400 |"
    assert lines[3] == "| grpo | 12.0 | 10 → 9 | 0.400 |"


def test_report_command_writes_figures_and_notes(tmp_path) -> None:
    a, b = fake_run(tmp_path, "p2o", [10, 4], 62.5), fake_run(tmp_path, "grpo", [10, 9], 12.0)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(a), str(b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["epoch_hard_count.png", "eval_accuracy.png", "gepa_per_epoch.png", "training_dynamics.png",
                    "training_reward.png"]
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    body = (out / "report.md").read_text()
    # The table and the figures call the variants by the paper's names.
    assert "| P²O | 62.5 |" in body and "| GRPO | 12.0 |" in body
    # Panels that never change are named, not drawn; runs on top of each other are named too.
    assert "Clip fraction: 0.01 at every point of every run (not drawn)" in body
    assert "Truncated responses: 0 at every point of every run (not drawn)" in body
    assert "GRPO ≡ P²O: identical values, drawn dashed on top" in body


def test_report_reads_a_run_that_is_appending_a_metrics_line(tmp_path) -> None:
    run = fake_run(tmp_path, "p2o", [10, 4], 62.5)
    with open(run / "metrics.jsonl", "ab") as log:
        log.write(b'{"training/step": 5, "epoch": 2, "eval/toy-hard/acc')  # the line a live run is writing
    assert load_run(run).last_eval() == {"toy-hard": 62.5}
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    # A torn line in the middle is damage, not a line being written: still refused.
    (run / "metrics.jsonl").write_bytes(b'{"training/step": 1, "ep\n{"training/step": 2}\n')
    with pytest.raises(RecordError, match="metrics.jsonl:1: malformed JSON"):
        load_run(run)


def test_not_a_run_directory(tmp_path) -> None:
    with pytest.raises(RecordError, match="no metrics.jsonl"):
        load_run(tmp_path)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2


def test_report_compare_paper(tmp_path) -> None:
    run = tmp_path / "mine"
    run.mkdir()
    rows = [{"training/step": 3, "epoch": 0, "eval/aime24/accuracy": 30.0, "eval/math500/accuracy": 85.0}]
    (run / "metrics.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(out), "--compare", "paper"])
    assert result.exit_code == 0, result.output
    body = (out / "report.md").read_text()
    assert "| mine | 30.0 | – | – | 85.0 | – | – | 57.5 |  |" in body
    # Qwen3-4B on the same two benchmarks: (23.8 + 82.8) / 2 = 53.3, so Δ = +4.2
    assert "| Qwen3-4B [T1] | 23.8 | 19.4 | 68.0 | 82.8 | 31.6 | 49.9 | 45.9 | +4.2 |" in body
    bad = CliRunner().invoke(app, ["report", str(run), "--out", str(out), "--compare", "table1"])
    assert bad.exit_code == 2


def test_smooth_is_a_debiased_ema() -> None:
    # weight 0.5: 2 -> 2; (0.5*1 + 0.5*4)/(0.75) = ... by hand: last=0.5*1+0.5*4=2.5 over norm 0.75 = 3.333…
    assert smooth([2.0, 4.0], 0.5) == pytest.approx([2.0, (0.5 * 1.0 + 0.5 * 4.0) / 0.75])
    assert smooth([3.0, 3.0, 3.0], 0.9) == pytest.approx([3.0, 3.0, 3.0])
    assert smooth([1.0, 5.0], 0.0) == [1.0, 5.0]


def test_a_run_keeps_its_colour_in_every_figure(tmp_path) -> None:
    runs = [fake_run(tmp_path, n, [3, i], 10.0 * i) for i, n in enumerate(("a", "b", "c"))]
    # "b" has no GEPA rows and no eval: with a per-figure colour cycle "c" would take b's colour there.
    rows = [orjson.loads(x) for x in (runs[1] / "metrics.jsonl").read_bytes().splitlines()]
    rows = [r for r in rows if not any(k.startswith(("gepa/", "eval/")) for k in r)]
    (runs[1] / "metrics.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    series = [load_run(r) for r in runs]
    with paper_style():
        styles = assign_styles([r.name for r in series])
        charts = run_charts(series, styles)
    assert [c.name for c in charts if c.figure is not None] == ["training_reward", "epoch_hard_count",
                                                                "eval_accuracy", "training_dynamics", "gepa_per_epoch"]
    colours: dict[str, set[str]] = {}
    for chart in charts:
        for ax in chart.figure.axes:
            for artist in [*ax.get_lines(), *ax.patches]:
                if artist.get_label() in {"a", "b", "c"}:
                    colour = artist.get_color() if hasattr(artist, "get_marker") else to_hex(artist.get_facecolor())
                    colours.setdefault(artist.get_label(), set()).add(to_hex(colour))
    assert set(colours) == {"a", "b", "c"}
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len({next(iter(c)) for c in colours.values()}) == 3


def test_a_variant_keeps_its_colour_whichever_variants_ran() -> None:
    canonical = ["grpo", "p2o", "p2o-no-distill"]
    every = assign_styles(canonical, {"p2o-no-distill": "P²O w/o CD"}, canonical)
    some = assign_styles(["p2o-no-distill", "mine", "yours"], {}, canonical)
    assert every["p2o-no-distill"].color == some["p2o-no-distill"].color == PALETTE[2]
    assert every["p2o-no-distill"].label == "P²O w/o CD" and some["p2o-no-distill"].label == "p2o-no-distill"
    # Other runs take the colours the variants present leave free; the order is the report's.
    assert (some["mine"].color, some["yours"].color) == (PALETTE[0], PALETTE[1])
    assert [s.order for s in some.values()] == [0, 1, 2]
    assert len({s.marker for s in every.values()}) == 3


def test_legends_sit_outside_the_panels_and_ticks_where_the_data_is(tmp_path) -> None:
    runs = [load_run(fake_run(tmp_path, n, [10, h], 62.5, varied=True)) for n, h in (("p2o", 4), ("grpo", 9))]
    with paper_style():
        styles = assign_styles([r.name for r in runs])
        charts = {c.name: c for c in run_charts(runs, styles)}
        assert all(chart.figure is not None for chart in charts.values()) and len(charts) == 5
        for chart in charts.values():
            fig = chart.figure
            render(fig, "png", 100)  # lays the figure out
            panels = [ax for ax in fig.axes if ax.axison]
            # The legends (the runs; the note on identical runs where there is one) stand beside
            # the panels or in a spare cell of the grid, never over a panel.
            legends = [*fig.legends, *(a for ax in fig.axes for a in ax.get_children() if isinstance(a, Legend))]
            assert legends and all(ax.get_legend() is None for ax in panels)
            for legend in legends:
                box = legend.get_window_extent()
                assert not any(box.overlaps(ax.get_window_extent()) for ax in panels), chart.name
    # Five dynamics panels on a 3 × 2 grid: the sixth cell holds the legend, no empty frame.
    dynamics = charts["training_dynamics"].figure
    assert sum(ax.axison for ax in dynamics.axes) == 5 and len(dynamics.axes) == 6 and not dynamics.legends
    # The evals ran at steps 0 and 4: the ticks are there, not every 0.5 steps.
    [ax] = charts["eval_accuracy"].figure.axes
    assert list(ax.get_xticks()) == [0, 4]
    # Two runs with the same eval values are shifted apart and named as identical.
    xs = [tuple(line.get_xdata()) for line in ax.get_lines() if line.get_label() in ("p2o", "grpo")]
    assert len(set(xs)) == 2
    assert charts["eval_accuracy"].notes == ["grpo ≡ p2o: identical values, drawn dashed on top"]
    assert "grpo ≡ p2o" in charts["eval_accuracy"].figure.legends[1].get_title().get_text()


def test_the_gepa_figure_draws_the_budget(tmp_path) -> None:
    run = fake_run(tmp_path, "p2o", [10, 4], 62.5)
    config = {"name": "p2o", "gepa": {"budget": 500}}
    (run / "config.json").write_bytes(orjson.dumps(config))
    with paper_style():
        series = [load_run(run)]
        [chart] = [c for c in run_charts(series, assign_styles(["p2o"])) if c.name == "gepa_per_epoch"]
    spent = chart.figure.axes[2]
    assert spent.get_title() == "rollouts spent"
    assert [tuple(line.get_ydata()) for line in spent.get_lines()] == [(500, 500)]
    assert spent.get_ylim()[1] > 600  # the bar (600 spent) and the line both fit


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_svg_and_pdf_figures_are_valid_files(tmp_path, fmt) -> None:
    run = fake_run(tmp_path, "p2o", [10, 4], 62.5)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(out), "--format", fmt])
    assert result.exit_code == 0, result.output
    files = sorted(out.glob(f"*.{fmt}"))
    assert len(files) == 5 and not list(out.glob("*.png"))
    assert f"(training_reward.{fmt})" in (out / "report.md").read_text()
    for path in files:
        data = path.read_bytes()
        if fmt == "svg":
            root = ElementTree.fromstring(data)
            assert root.tag == "{http://www.w3.org/2000/svg}svg" and float(root.get("width").rstrip("pt")) > 100
        else:
            check_pdf(data)


def check_pdf(data: bytes) -> None:
    """A PDF's frame: header, the cross-reference table where startxref says, every object it
    lists at its offset, a catalog with pages, and the end marker."""
    assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF")
    start = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data).group(1))
    assert data[start:start + 4] == b"xref"
    header = re.match(rb"xref\s+0 (\d+)\s+", data[start:])
    count, table = int(header.group(1)), data[start + header.end():]
    entries = re.findall(rb"(\d{10}) (\d{5}) ([nf])", table[: 20 * count])
    assert len(entries) == count
    for number, (offset, _, kind) in enumerate(entries):
        if kind == b"n":
            assert re.match(rb"%d 0 obj" % number, data[int(offset):]), number
    assert re.search(rb"/Type /Catalog", data) and re.search(rb"/Type /Pages", data)


def test_pure_helpers_by_hand() -> None:
    # Data limits: a margin of 8% of the spread, from zero when the low end is near it, inside the bound.
    assert data_limits([40.0, 50.0]) == (pytest.approx(39.2), pytest.approx(50.8))
    assert data_limits([1.0, 10.0]) == (0.0, pytest.approx(10.72))
    # A spread under a tenth of the values' size is drawn in a window of that tenth: 294 → 293 is no plunge.
    assert data_limits([0.98, 1.0], bound=(0.0, 1.0)) == (pytest.approx(0.932), 1.0)
    assert data_limits([293.0, 294.0]) == (pytest.approx(293.5 - 0.58 * 29.4), pytest.approx(293.5 + 0.58 * 29.4))
    assert data_limits([5.0]) == (0.0, pytest.approx(5.4))
    assert data_limits([]) is None
    assert thin_ticks([0, 10, 20]) == [0, 10, 20]
    assert thin_ticks(list(range(0, 50, 2)), most=5) == [0, 12, 24, 36, 48]
    assert thin_ticks(list(range(0, 23)), most=5) == [0, 6, 12, 18, 22]
    assert spacing([0, 10, 20, 25]) == 5 and spacing([3]) == 1.0
    assert dodge(0, 1, 10.0) == 0.0
    assert [dodge(i, 3, 10.0) for i in range(3)] == [pytest.approx(-0.8), 0.0, pytest.approx(0.8)]
    assert identical_to({"a": ([1, 2], [0.5, 0.6]), "b": ([1, 2], [0.5, 0.6]), "c": ([1, 2], [0.5, 0.7]),
                         "d": ([], [])}) == {"b": "a"}
    assert flat_note("clip", [0.0, 0.0, 0.0]) == "clip: 0 at every point of every run (not drawn)"
    assert flat_note("clip", [0.0]) is not None and flat_note("templates", [3.0]) is None
    assert flat_note("kl", [0.1, 0.2]) is None and "no data" in flat_note("kl", [])
    assert grid(2) == (2, 1) and grid(4) == (2, 2) and grid(5) == (3, 2)
