from __future__ import annotations

import math
from pathlib import Path

import orjson
from typer.testing import CliRunner

from p2o_cli.cli import app
from p2o_cli.report.aggregate import aggregate_table, final_chart, group_runs, hard_curve, mean_std, per_seed_table
from p2o_cli.report.figures import load_run
from p2o_cli.report.style import assign_styles, paper_style
from p2o_cli.toy.sweep import NAMES


def seed_run(root: Path, name: str, seed: int, start: float, final: float, hard: list[int]) -> Path:
    run = root / f"runs-{seed}" / name
    run.mkdir(parents=True)
    rows = [{"training/step": 0, "epoch": 0, "eval/toy-hard/accuracy": start, "eval/toy-easy/accuracy": 50.0}]
    rows += [{"epoch": e, "training/step": e + 1, "epoch/hard_count": h} for e, h in enumerate(hard)]
    rows.append({"training/step": len(hard), "epoch": len(hard) - 1, "eval/toy-hard/accuracy": final,
                 "eval/toy-easy/accuracy": 50.0 + seed})
    (run / "metrics.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (run / "config.json").write_bytes(orjson.dumps({"name": name, "seed": seed}))
    return run


def test_mean_and_sample_std() -> None:
    assert mean_std([2.0, 4.0, 6.0]) == (4.0, 2.0)  # sample std: sqrt((4 + 0 + 4) / 2)
    assert mean_std([5.0]) == (5.0, 0.0)
    assert all(math.isnan(x) for x in mean_std([]))


def test_hard_curve_averages_each_epoch_over_the_runs_that_reached_it() -> None:
    assert hard_curve([[10, 4, 2], [20, 6]]) == [(15.0, mean_std([10, 20])[1]), (5.0, mean_std([4, 6])[1]), (2.0, 0.0)]


def test_runs_of_one_name_become_one_row_over_seeds(tmp_path) -> None:
    dirs = [seed_run(tmp_path, "p2o", 1, 1.0, 40.0, [100, 50]), seed_run(tmp_path, "p2o", 2, 3.0, 60.0, [80, 30]),
            seed_run(tmp_path, "grpo", 1, 1.0, 2.0, [100, 98]), seed_run(tmp_path, "grpo", 2, 3.0, 4.0, [80, 79])]
    groups = group_runs([load_run(d) for d in dirs])
    assert [g.name for g in groups] == ["p2o", "grpo"]
    assert groups[0].final == {"toy-hard": [40.0, 60.0], "toy-easy": [51.0, 52.0]}
    assert groups[0].seeds == [1, 2]
    lines = aggregate_table(groups, {"p2o": "P²O"}).strip().splitlines()
    assert lines[0] == "| run | seeds | toy-easy | toy-hard | hard problems per epoch |"
    assert lines[2] == "| start (step 0) | 2 | 50.0 ± 0.0 | 2.0 ± 1.4 | |"
    assert lines[3] == "| P²O | 2 | 51.5 ± 0.7 | 50.0 ± 14.1 | 90 → 40 |"
    assert lines[4] == "| grpo | 2 | 51.5 ± 0.7 | 3.0 ± 1.4 | 90 → 88 |"


def test_per_seed_table_counts_the_seeds_where_a_variant_beats_the_reference(tmp_path) -> None:
    dirs = [seed_run(tmp_path, "p2o", 1, 1.0, 40.0, [100]), seed_run(tmp_path, "p2o", 2, 3.0, 12.9, [80]),
            seed_run(tmp_path, "grpo", 1, 1.0, 2.0, [100]), seed_run(tmp_path, "grpo", 2, 3.0, 3.0, [80])]
    groups = group_runs([load_run(d) for d in dirs])
    lines = per_seed_table(groups, "toy-hard", {"p2o": "P²O"}, reference="grpo").strip().splitlines()
    assert lines[0] == "| run | seed 1 | seed 2 | mean ± std | ≥ grpo + 10 |"
    assert lines[2] == "| start (step 0) | 1.0 | 3.0 | 2.0 ± 1.4 |  |"
    assert lines[3] == "| P²O | 40.0 | 12.9 | 26.4 ± 19.2 | 1 of 2 |"  # 12.9 < 3.0 + 10
    assert lines[4] == "| grpo | 2.0 | 3.0 | 2.5 ± 0.7 |  |"


def test_report_aggregate_writes_table_and_figures(tmp_path) -> None:
    dirs = [seed_run(tmp_path, "p2o", s, 1.0, 40.0 + s, [100, 50]) for s in (1, 2, 3)]
    dirs += [seed_run(tmp_path, "grpo", s, 1.0, 2.0 * s, [100, 90 + s]) for s in (1, 2, 3)]
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", *map(str, dirs), "--aggregate", "--out", str(out), "--html"])
    assert result.exit_code == 0, result.output
    body = (out / "report.md").read_text()
    # The rows carry the paper's names.
    assert "| P²O | 3 | 52.0 ± 1.0 | 42.0 ± 1.0 | 100 → 50 |" in body and "| GRPO | 3 |" in body
    for png in ("final_accuracy.png", "hard_count_per_epoch.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/svg+xml;base64,') == 2 and "<td>P²O</td>" in html


def test_final_accuracy_marks_every_seed_and_names_variants(tmp_path) -> None:
    dirs = [seed_run(tmp_path, name, s, 1.0, final, [100, 50]) for name, s, final in
            (("grpo", 1, 2.0), ("grpo", 2, 90.0), ("p2o-no-distill", 1, 5.0), ("p2o-no-distill", 2, 80.0))]
    groups = group_runs([load_run(d) for d in dirs])
    with paper_style():
        styles = assign_styles([g.name for g in groups], NAMES, list(NAMES))
        chart = final_chart(groups, styles)
    hard_axis = chart.figure.axes[1]
    assert hard_axis.get_title() == "toy-hard"
    assert [t.get_text() for t in hard_axis.get_xticklabels()] == ["GRPO", "P²O w/o CD"]
    # A marker per seed, joined across the variants; bars at the means.
    seeds = {line.get_label(): list(line.get_ydata()) for line in hard_axis.get_lines()}
    assert seeds == {"seed 1": [2.0, 5.0], "seed 2": [90.0, 80.0]}
    assert [bar.get_height() for bar in hard_axis.patches] == [46.0, 42.5]
    # Nothing is cut: the axis holds every seed (no whisker runs below zero).
    low, high = hard_axis.get_ylim()
    assert low == 0.0 and 90.0 < high <= 100.0
