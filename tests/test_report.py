from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from p2o_cli.cli import app
from p2o_cli.errors import RecordError
from p2o_cli.report.figures import comparison_table, load_run, smooth, y_limits


def fake_run(root: Path, name: str, hard: list[int], final_acc: float) -> Path:
    run = root / name
    run.mkdir()
    rows = [{"training/step": 0, "epoch": 0, "eval/toy-hard/accuracy": 1.0}]
    for step in range(1, 5):
        rows.append({"training/step": step, "epoch": (step - 1) // 2, "critic/rewards/mean": step / 10,
                     "rollout/plain_reward_mean": step / 20, "rollout/templated_reward_mean": 0.0 if step < 3 else 0.5,
                     "rollout/templated_frac": 0.0 if step < 3 else 0.25, "actor/ppo_kl": 0.001 * step,
                     "actor/pg_clipfrac": 0.01, "actor/entropy": 1.0 - step / 10, "response_length/mean": 20.0 + step,
                     "rollout/truncated_frac": 0.0})
    rows += [{"epoch": e, "training/step": 2 * (e + 1), "epoch/hard_count": h} for e, h in enumerate(hard)]
    rows.append({"epoch": 0, "training/step": 2, "gepa/dev_coverage": 0.5, "gepa/templates": 3,
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


def test_report_command_writes_plots(tmp_path) -> None:
    a, b = fake_run(tmp_path, "p2o", [10, 4], 62.5), fake_run(tmp_path, "grpo", [10, 9], 12.0)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(a), str(b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["epoch_hard_count.png", "eval_toy-hard_accuracy.png", "gepa_per_epoch.png",
                    "training_dynamics.png", "training_reward.png"]
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "| p2o | 62.5 |" in (out / "report.md").read_text()


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


def test_flat_and_one_point_series_get_an_axis_from_zero() -> None:
    assert y_limits([0.5]) == (0.0, pytest.approx(0.6))  # one point: not a ±0.04 window
    assert y_limits([40.0, 40.5], bounded=100.0) == (0.0, 100.0)
    assert y_limits([0.0, 0.0]) == (0.0, 1.0)
    assert y_limits([1.0, 5.0]) is None  # a real spread: matplotlib decides
    assert y_limits([-2.0]) == (pytest.approx(-2.4), 0.0)


def test_a_run_keeps_its_colour_in_every_plot(tmp_path, monkeypatch) -> None:
    import p2o_cli.report.figures as report

    runs = [fake_run(tmp_path, n, [3, 2], 1.0) for n in ("a", "b", "c")]
    # "b" has no GEPA rows and no eval: with a per-plot colour cycle "c" would take b's colour there.
    rows = [orjson.loads(x) for x in (runs[1] / "metrics.jsonl").read_bytes().splitlines()]
    rows = [r for r in rows if not any(k.startswith(("gepa/", "eval/")) for k in r)]
    (runs[1] / "metrics.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    colours: dict[str, set[str]] = {}
    real_save = report.save_figure

    def spy(fig, path, **kw):
        for ax in fig.axes:
            for line in ax.get_lines():
                label = line.get_label().split(" (")[0]
                if not label.startswith("_"):
                    colours.setdefault(label, set()).add(str(line.get_color()))
        return real_save(fig, path, **kw)

    monkeypatch.setattr(report, "save_figure", spy)
    report.write_report(runs, tmp_path / "out")
    assert set(colours) == {"a", "b", "c"}
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len({next(iter(c)) for c in colours.values()}) == 3
