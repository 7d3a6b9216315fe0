"""What --help says: every effective default, one vocabulary (TRL/verl aliases as flags), panels, metavars."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from p2o_cli.cli import app
from p2o_cli.cli.options import COMMANDS, shown_value
from p2o_cli.config import ALIASES, base_type, option_specs, resolve
from p2o_cli.gepa.reflectors import REFLECTORS
from p2o_cli.rl.registry import ADVANTAGE_ESTIMATORS, KL_PENALTIES, POLICY_LOSSES

runner = CliRunner()


def commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the ``p2o`` tree by its path (``()`` is ``p2o`` itself, with the global options)."""
    def walk(group: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from walk(command, (*path, name))
            else:
                yield (*path, name), command

    root = typer.main.get_command(app)
    yield (), root
    yield from walk(root, ())


def job_of(path: tuple[str, ...]) -> tuple[type, Any]:
    key = ("p2o", "") if not path else (path[-2] if len(path) > 1 else "p2o", path[-1])
    return COMMANDS[key]


def help_records(path: tuple[str, ...]) -> dict[str, str]:
    """The real ``--help`` output: each option's record (its wrapped lines joined), by its first flag."""
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    records: dict[str, str] = {}
    current = None
    for line in result.output.splitlines():
        if re.match(r"  -", line):
            current = line.strip()
            records[current.split()[0].rstrip(",")] = current
        elif current is not None and line.startswith("     ") and line.strip():
            key = current.split()[0].rstrip(",")
            records[key] = records[key] + " " + line.strip()
        else:
            current = None
    assert records, result.output
    return records


def printed_default(record: str) -> str | None:
    found = re.search(r"\[(?:env var: [^;\]]+; )?default: (.*)\]$", record)
    return found.group(1) if found else None


def value_at(cfg: Any, path: tuple[str, ...], name: str) -> Any:
    for section in path:
        cfg = getattr(cfg, section)
    return getattr(cfg, name)


def same(a: str, b: str) -> bool:
    """Equal but for whitespace (click wraps long defaults, breaking lines after hyphens too)."""
    return re.sub(r"\s+", "", a) == re.sub(r"\s+", "", b)


def required_values(specs: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for name, specs_of in specs.items():
        if specs_of[0].meta.get("required"):
            tp, _ = base_type(specs_of[0].type)
            values[name] = ["x"] if typing.get_origin(tp) is list else "x"
    return values


@pytest.mark.parametrize("path", [path for path, _ in commands()], ids=lambda p: " ".join(("p2o", *p)))
def test_every_effective_default_is_what_help_prints(path: tuple[str, ...], monkeypatch) -> None:
    """The value an option takes when not given (through every layer, follow and fallback of
    resolve) is what --help prints as its default; a None value is a documented fallback."""
    for var in ("P2O_DATA_DIR", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    job, base = job_of(path)
    specs = option_specs(job)
    cfg, _ = resolve(job, required_values(specs), None, base)
    records = help_records(path)
    checked = 0
    for name, specs_of in specs.items():
        spec = specs_of[0]
        if spec.meta.get("argument"):
            continue
        record = records[spec.flag]
        if spec.meta.get("required"):
            assert record.endswith("[required]"), record
            continue
        printed, value = printed_default(record), value_at(cfg, spec.path, name)
        assert printed, f"{spec.flag} prints no default: {record}"
        assert "(" not in printed[:1], record  # never click's "(value)"
        target = spec.meta.get("follows")
        if target in specs:
            scale = spec.meta.get("scale", 1.0)
            followed = value_at(cfg, specs[target][0].path, target)
            assert value == (followed if scale == 1.0 else followed * scale), name
            assert printed.endswith(specs[target][0].flag), record
        elif value is None or value == []:
            assert spec.meta.get("unset") and same(printed, spec.meta["unset"]), record
        else:
            assert same(printed, shown_value(value)), (record, value)
        checked += 1
    assert checked == sum(1 for s in specs.values() if not s[0].meta.get("argument") and not s[0].meta.get("required"))


def test_every_command_was_checked() -> None:
    paths = [path for path, _ in commands()]
    assert {("run",), ("train-step",), ("eval",), ("gepa",), ("data", "prepare"), ("toy", "init")} <= set(paths)
    assert all(job_of(path) for path in paths)


def test_trl_and_verl_names_are_flags_shown_once() -> None:
    result = runner.invoke(app, ["run", "--num-generations", "8", "--learning-rate", "1e-6", "--help"])
    assert result.exit_code == 0, result.output
    text = result.output
    for alias, name in ALIASES.items():
        if name in option_specs(job_of(("run",))[0]):
            flag = "--" + name.replace("_", "-")
            assert f"{flag}, --{alias.replace('_', '-')} " in text, alias
    assert "alias" not in text.lower()
    # The aliases reach the option they name (these values fail its checks, before anything loads).
    result = runner.invoke(app, ["run", "--model", "m", "--data", "d", "--epsilon", "2"])
    assert result.exit_code == 2 and "--clip-low must be below 1, got 2" in result.output
    result = runner.invoke(app, ["run", "--model", "m", "--data", "d", "--beta", "0.1"])
    assert result.exit_code == 2 and "--kl-coef > 0 needs --ref-model" in result.output


def test_a_config_setting_an_alias_and_its_option_is_an_error_naming_both(tmp_path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('model = "m"\ndata = "d"\nnum_generations = 2\n[rollout]\nk = 3\n')
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "'num_generations' and '[rollout] k' both set --k" in result.output
    path.write_text('model = "m"\ndata = "d"\n[train]\nlearning_rate = 1e-6\nlr = 2e-6\n')
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2 and "'[train] learning_rate' and '[train] lr' both set --lr" in result.output


def test_run_help_is_grouped_with_real_metavars_and_registry_names() -> None:
    result = runner.invoke(app, ["run", "--help"])
    text = result.output
    panels = re.findall(r"^(\S[^:\n]*):$", text, flags=re.M)
    assert panels[:1] == ["Run"] and {"Model & engine", "Data", "Rollout", "Training", "GEPA", "Evaluation"} <= set(
        panels)
    for shown_flag in ("--model PATH", "--epochs INT", "--lr, --learning-rate FLOAT", "--resume RUN_DIR",
                       "--engine [auto|hf|vllm|openai]", "--grader [strict|qwen]"):
        assert shown_flag in text, shown_flag
    for flag, registry in (("--policy-loss", POLICY_LOSSES), ("--kl-penalty", KL_PENALTIES),
                           ("--adv-estimator", ADVANTAGE_ESTIMATORS), ("--reflector", REFLECTORS)):
        assert f"{flag} [{'|'.join(registry.names())}]" in text, flag
    assert "toy" in REFLECTORS.names()  # a plug-in's name is listed with the built-ins
    assert "<str>" not in text and "<int>" not in text and "default: (" not in text


def test_options_that_do_not_apply_are_not_offered() -> None:
    for command in ("eval", "rollout", "gepa"):
        assert "--vllm-sleep" not in runner.invoke(app, [command, "--help"]).output, command
    assert "--vllm-sleep" in runner.invoke(app, ["run", "--help"]).output


def test_registries_list_their_built_ins_without_importing_them() -> None:
    """--help lists a registry's names without importing the module that registers them (torch):
    the names it declares are exactly the ones that module registers."""
    import p2o_cli.reward.specs  # noqa: F401 - registers the built-in rewards
    import p2o_cli.rl.core_algos  # noqa: F401 - registers the built-ins
    from p2o_cli.reward.registry import REWARDS

    for registry in (ADVANTAGE_ESTIMATORS, POLICY_LOSSES, KL_PENALTIES, REWARDS):
        assert registry.builtin and set(registry.registered()) == set(registry.builtin), registry.kind
