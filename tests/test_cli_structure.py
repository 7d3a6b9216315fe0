"""How options and errors travel: declared once, generated everywhere, checked early, reported honestly."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from p2o_cli.cli import app
from p2o_cli.cli.assign import AssignJob
from p2o_cli.cli.eval import EvalJob
from p2o_cli.cli.gepa import GepaJob
from p2o_cli.cli.mine_hard import MineHardJob
from p2o_cli.cli.rollout import RolloutJob
from p2o_cli.cli.train_step import TrainStepJob
from p2o_cli.config import build, option_specs, read_config_file
from p2o_cli.loop.config import RunConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "p2o_cli"
STAGE_JOBS = (RolloutJob, MineHardJob, EvalJob, GepaJob, AssignJob, TrainStepJob)
runner = CliRunner()


def command_params(*path: str) -> dict[str, object]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {p.name: p for p in command.params}


def test_no_typer_option_is_declared_outside_the_generator() -> None:
    declaring = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                       if "typer.Option(" in p.read_text() or "typer.Argument(" in p.read_text())
    assert declaring == ["cli/options.py"]


def test_every_command_offers_exactly_its_configs_options() -> None:
    for name, job in (("rollout", RolloutJob), ("mine-hard", MineHardJob), ("eval", EvalJob), ("gepa", GepaJob),
                      ("assign", AssignJob), ("train-step", TrainStepJob), ("run", RunConfig)):
        assert set(command_params(name)) == set(option_specs(job)) | {"config"}, name


def test_run_offers_every_stage_option_but_what_the_loop_owns() -> None:
    """A stage option (anything in a job's sections, not the job's own file paths) is reachable from run."""
    stage_options = {
        spec.name for job in STAGE_JOBS for specs in option_specs(job).values() for spec in specs if spec.path
    }
    loop_owned = {"total_steps"}  # the loop sets the schedule from --epochs and the data
    assert stage_options - loop_owned <= set(command_params("run"))
    assert "total_steps" not in command_params("run")
    for flag in ("adv_estimator", "kl_coef", "system_prompt", "gpu_memory_utilization", "reflector_timeout"):
        assert flag in command_params("run")


def test_one_name_means_one_thing_in_every_command() -> None:
    seen: dict[str, tuple[object, str]] = {}
    for job in (*STAGE_JOBS, RunConfig):
        for name, specs in option_specs(job).items():
            spec = specs[0]
            if spec.path:  # stage options; a job's own --out/--model differ by what the command writes
                meaning = (spec.type, spec.meta["help"])
                assert seen.setdefault(name, meaning) == meaning, name
    assert "gen_batch_size" in seen and "batch_size" not in seen  # run's --batch-size is problems per step


def test_help_imports_neither_torch_nor_transformers() -> None:
    code = ("import sys; from typer.testing import CliRunner; from p2o_cli.cli import app; "
            "r = CliRunner().invoke(app, ['run', '--help']); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(app, ['report', '--help']); assert r.exit_code == 0, r.output; "
            "heavy = {'torch', 'transformers', 'matplotlib'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_version_and_short_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("p2o ")
    result = runner.invoke(app, ["mine-hard", "-h"])
    assert result.exit_code == 0 and "--tau" in result.output and "[default: 0.2]" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--tau", "-1"], "--tau must be in [0, 1], got -1"),
        (["run", "--top-p", "5"], "--top-p must be at most 1, got 5"),
        (["run", "--reward-timeout", "-1"], "--reward-timeout must be greater than 0"),
        (["run", "--budget", "-1"], "--budget must be at least 0"),
        (["run", "--width", "0"], "--width must be at least 1"),
        (["run", "--reflector", "kimmi"], "unknown reflector 'kimmi'"),
        (
            ["train-step", "--rollouts", "r.jsonl", "--out", "c", "--max-grad-norm", "-1"],
            "--max-grad-norm must be at least 0",
        ),
        (["mine-hard", "--tau", "5"], "--tau must be in [0, 1], got 5"),
        (["run", "--engine", "openai"], "needs an engine it can update"),
        (["run", "--model", "m"], "missing --data"),
    ],
)
def test_bad_option_values_fail_before_anything_loads(args, message, tmp_path) -> None:
    base = (
        ["--model", str(tmp_path / "no-model"), "--data", str(tmp_path / "no-data.jsonl")] if args[0] == "run" else []
    )
    if args[0] == "train-step":
        base = ["--model", str(tmp_path / "no-model")]
    if args == ["run", "--model", "m"]:
        base = []
    result = runner.invoke(app, [*args, *base])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_config_files_are_type_checked_and_take_trl_names(tmp_path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('model = "m"\ndata = "d.jsonl"\n[train]\nlr = "1e-6"\n')
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2 and "field 'lr' must be a number" in result.output
    path.write_text('model = "m"\ndata = "d.jsonl"\nnum_generations = 4\nbeta = 0.0\nepsilon_high = 0.28\n'
                    '[gepa]\nbudget = 50\n[eval]\nbench = ["aime24"]\n')
    cfg = build(RunConfig, read_config_file(path, RunConfig))
    assert (cfg.rollout.k, cfg.assign.k, cfg.train.clip_high, cfg.gepa.budget) == (4, 4, 0.28, 50)
    assert cfg.eval.bench == ["aime24"]
    path.write_text('[gepa]\nlr = 1.0\n')
    with pytest.raises(ValueError, match="does not belong in \\[gepa\\]"):
        read_config_file(path, RunConfig)
    path.write_text('no_std_norm = true\n')
    with pytest.raises(ValueError, match="is now 'std_norm = false'"):
        read_config_file(path, RunConfig)
    yaml_path = tmp_path / "run.yaml"
    yaml_path.write_text("model: m\ndata: d.jsonl\ntrain:\n  lr: 2.0e-6\n")
    assert build(RunConfig, read_config_file(yaml_path, RunConfig)).train.lr == 2e-6


def test_shared_options_reach_every_stage_of_run() -> None:
    cfg = build(RunConfig, {"model": "m", "data": "d", "seed": 7, "temperature": 0.9, "k": 4,
                            "instruction": "Be brief."})
    assert cfg.seed == cfg.train.seed == cfg.gepa.seed == cfg.rollout.seed == cfg.eval.seed == 7
    assert cfg.rollout.temperature == cfg.train.temperature == 0.9
    assert cfg.rollout.k == cfg.assign.k == 4
    assert cfg.rollout.prompt.instruction == cfg.gepa.prompt.instruction == cfg.eval.prompt.instruction == "Be brief."


def test_example_configs_build(tmp_path) -> None:
    paths = sorted((SRC.parents[1] / "examples").glob("*.toml"))
    assert paths, "no example configs found"
    for path in paths:
        values = read_config_file(path, RunConfig)
        build(RunConfig, {"model": "m", "data": "d", **values})


def test_an_internal_error_exits_1_with_a_hint_and_debug_shows_the_traceback(tmp_path, monkeypatch) -> None:
    import p2o_cli.rollout.mining

    def broken(*args, **kwargs):
        raise IndexError("shape mismatch in a pure function")

    monkeypatch.setattr(p2o_cli.rollout.mining, "mine_hard", broken)
    from p2o_cli.files.records import Rollout, write_records

    rollouts = tmp_path / "r.jsonl"
    write_records(rollouts, [Rollout(id="q", k=0, prompt="p", response="r", reward=0.0, pred=None,
                                     finish_reason="stop", n_tokens=1, problem="1+1?", answer="2")])
    result = runner.invoke(app, ["mine-hard", "--rollouts", str(rollouts), "--out", str(tmp_path / "h.jsonl")])
    assert result.exit_code == 1
    assert "internal error (IndexError)" in result.output and "P2O_DEBUG=1" in result.output
    assert "Traceback" not in result.output
    monkeypatch.setenv("P2O_DEBUG", "1")
    result = runner.invoke(app, ["mine-hard", "--rollouts", str(rollouts), "--out", str(tmp_path / "h.jsonl")])
    assert result.exit_code == 1 and "Traceback" in result.output and "in broken" in result.output


def imports_of(path: Path) -> set[str]:
    """The p2o_cli modules ``path`` imports (anywhere in it: top level, functions, TYPE_CHECKING), dotted."""
    rel = path.relative_to(SRC)
    package = list(rel.parent.parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif (node.module or "").startswith("p2o_cli."):
                target = node.module.split(".")[1:]
            else:
                continue
            names = [a.name for a in node.names]
            # `from . import x` / `from .pkg import module` name modules; other names are attributes.
            found |= {".".join([*target, n]) if (SRC / Path(*target, n)).with_suffix(".py").is_file()
                      or (SRC / Path(*target, n)).is_dir() else ".".join(target) for n in names}
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("p2o_cli.") for a in node.names if a.name.startswith("p2o_cli.")}
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def documented_floors() -> dict[str, int]:
    """Room -> floor, from the table in docs/architecture.md (the picture the code is held against)."""
    text = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    table = text.split("<!-- layers:start -->")[1].split("<!-- layers:end -->")[0]
    floors = {}
    for line in table.strip().splitlines()[2:]:
        floor, room, _ = (cell.strip() for cell in line.strip("|").split("|"))
        floors[room.strip("`").removesuffix("/").removesuffix(".py")] = int(floor)
    assert len(floors) > 10
    return floors


def test_every_import_runs_down_the_documented_floors() -> None:
    floors = documented_floors()
    rooms = {p.name.removesuffix(".py") for p in SRC.iterdir() if (p.is_dir() and (p / "__init__.py").is_file())
             or (p.suffix == ".py" and p.name not in ("__init__.py", "__main__.py"))}
    assert rooms == set(floors), "docs/architecture.md lists exactly the rooms of src/p2o_cli"
    checked = 0
    for path in SRC.rglob("*.py"):
        room = module_name(path).split(".")[0]
        if room in ("", "__main__"):
            continue
        for target in imports_of(path):
            other = target.split(".")[0]
            if other != room:
                assert floors[other] < floors[room], f"{path.relative_to(SRC)} imports {target}: floor " \
                                                     f"{floors[other]} is not below {room}'s {floors[room]}"
                checked += 1
    assert checked > 100


def test_no_import_cycle_between_modules() -> None:
    graph = {module_name(p): imports_of(p) for p in SRC.rglob("*.py")}
    assert len(graph) > 80
    done: set[str] = set()

    def visit(module: str, stack: list[str]) -> None:
        if module in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(module):], module]))
        if module in done or module not in graph:
            return
        for target in graph[module]:
            visit(target, [*stack, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_a_saved_run_config_reads_back_to_the_same_config() -> None:
    from p2o_cli.config import flatten, to_dict

    cfg = build(RunConfig, {"model": "m", "data": "d", "lr": 3e-4, "bench": ["toy-hard"], "no_gepa": True})
    again = build(RunConfig, flatten(to_dict(cfg), RunConfig, "config.json"))
    assert again == cfg


def test_docs_option_reference_is_current() -> None:
    from p2o_cli.cli.options import options_markdown

    page = (SRC.parents[1] / "docs" / "configuration.md").read_text()
    section = page.split("<!-- options:start -->\n")[1].split("<!-- options:end -->")[0]
    assert section == options_markdown(RunConfig), "run `make options-doc`"


def test_run_checks_the_reflector_key_before_any_model_loads(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MOONSHOT_API_KEY", raising=False)
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "q", "problem": "1+1?", "answer": "2"}\n')
    # The model path does not exist: reaching the model would fail differently.
    result = runner.invoke(app, ["run", "--model", str(tmp_path / "no-model"), "--data", str(data),
                                 "--out", str(tmp_path / "run"), "--reflector", "kimi"])
    assert result.exit_code == 2 and "MOONSHOT_API_KEY is not set" in result.output
