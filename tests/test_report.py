from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from p2o_cli.cli import app
from p2o_cli.report import comparison_table, load_run
from p2o_cli.records import RecordError


def fake_run(root: Path, name: str, hard: list[int], final_acc: float) -> Path:
    run = root / name
    run.mkdir()
    rows = [{"training/step": 0, "epoch": 0, "eval/toy-hard/accuracy": 1.0}]
    for step in range(1, 5):
        rows.append({"training/step": step, "epoch": (step - 1) // 2, "critic/rewards/mean": step / 10})
    rows += [{"epoch": e, "training/step": 2 * (e + 1), "epoch/hard_count": h} for e, h in enumerate(hard)]
    rows.append({"epoch": 0, "training/step": 2, "gepa/dev_coverage": 0.5})
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
    assert pngs == ["critic_rewards_mean.png", "epoch_hard_count.png", "eval_toy-hard_accuracy.png",
                    "gepa_dev_coverage.png"]
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
