"""--report-to: the trackers get exactly what metrics.jsonl gets, under the same names."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from helpers import assert_same_metrics
from p2o_cli.cli import app
from p2o_cli.monitor.tracking import open_metrics_logger, resolve_report_to


def test_resolve_report_to() -> None:
    assert resolve_report_to("none") == []
    assert resolve_report_to("tensorboard") == ["tensorboard"]
    assert resolve_report_to(None) == ["tensorboard"]  # installed (dev extra): the default
    assert "tensorboard" in resolve_report_to("all")
    with pytest.raises(ValueError, match="--report-to must be one of"):
        resolve_report_to("tensorbored")
    with pytest.raises(ValueError, match="cannot be combined"):
        resolve_report_to("none,tensorboard")


def test_uninstalled_tracker_names_its_extra(monkeypatch) -> None:
    import p2o_cli.monitor.tracking as tracking

    monkeypatch.setattr(tracking, "tracker_installed", lambda name: name == "tensorboard")
    with pytest.raises(ValueError, match=r"pip install 'p2o-cli\[wandb\]'"):
        resolve_report_to("wandb")
    assert resolve_report_to("all") == ["tensorboard"]


def test_logger_writes_jsonl_and_event_files_alike(tmp_path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    logger = open_metrics_logger(metrics, "tensorboard", tmp_path, "demo", {"lr": 1e-6, "eval_bench": ["a"]})
    logger.log({"training/step": 1, "epoch": 0, "actor/pg_loss": -0.25, "critic/rewards/mean": 0.5})
    logger.log({"training/step": 1, "epoch": 0, "eval/toy/accuracy": 12.5, "note": "text is not plotted"})
    logger.log({"training/step": 2, "epoch": 0, "actor/pg_loss": 0.125, "flag": True})
    logger.close()
    assert len(metrics.read_bytes().splitlines()) == 3
    assert_same_metrics(tmp_path / "tensorboard", metrics)


def test_train_step_reports_to_tensorboard(tmp_path, tiny_model_dir) -> None:
    problems = tmp_path / "p.jsonl"
    problems.write_bytes(b"".join(orjson.dumps({"id": f"q{i}", "problem": f"What is {i}+{i}?", "answer": str(2 * i)})
                                  + b"\n" for i in range(3)))
    runner = CliRunner()
    rollouts = tmp_path / "r.jsonl"
    result = runner.invoke(app, ["rollout", "--model", str(tiny_model_dir), "--data", str(problems), "--k", "2",
                                 "--temperature", "1.0", "--max-new-tokens", "6", "--out", str(rollouts)])
    assert result.exit_code == 0, result.output
    metrics = tmp_path / "logs" / "metrics.jsonl"
    model = str(tiny_model_dir)
    for step in (1, 2):  # a chain of two: both steps land in the same TensorBoard run
        out = tmp_path / f"ckpt-{step}"
        result = runner.invoke(app, ["train-step", "--model", model, "--rollouts", str(rollouts), "--out", str(out),
                                     "--metrics", str(metrics), "--report-to", "tensorboard", "--total-steps", "4"])
        assert result.exit_code == 0, result.output
        model = str(out)
    assert len(metrics.read_bytes().splitlines()) == 2
    assert list((tmp_path / "logs" / "tensorboard").iterdir()) == [tmp_path / "logs" / "tensorboard" / "metrics"]
    assert_same_metrics(tmp_path / "logs" / "tensorboard", metrics)
