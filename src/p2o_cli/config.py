"""Options declared once, on the config dataclass of the stage that owns them.

A field made with :func:`option` carries its default, help text and bounds; a field made with
:func:`section` nests another config (``RunConfig.train`` is a ``TrainConfig``, as verl nests its
component configs). From these declarations alone come the command-line flags (``cli/options.py``),
the ``--config`` file keys (flat, or grouped in ``[train]``, ``[gepa]`` … tables), type checks and
range checks. Every option name is unique across a command's whole tree, so a flag means the same
thing in every command; a few options (``seed``, ``temperature``, ``k``, the prompt settings) are
*shared*: one value feeds every stage config of a command that declares them.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, P2OError
from .files.records import check_type

# TRL / verl names accepted in config files for the p2o option they mean.
ALIASES: dict[str, str] = {
    "num_generations": "k",
    "max_completion_length": "max_new_tokens",
    "beta": "kl_coef",
    "epsilon": "clip_low",
    "epsilon_high": "clip_high",
    "learning_rate": "lr",
}
# Keys of earlier p2o config files: renamed ones still work, ones whose meaning changed are named.
ALIASES.update({"eval_data_dir": "data_dir", "eval_bench": "bench"})
RENAMED: dict[str, str] = {"no_std_norm": "std_norm = false"}


def option(
    default: Any = MISSING,
    *,
    help: str,
    default_factory: Callable[[], Any] | Any = MISSING,
    choices: tuple[str, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    envvar: str | None = None,
    shared: bool = False,
    cli: bool = True,
    flag: str | None = None,
    argument: bool = False,
    metavar: str | None = None,
    required: bool = False,
) -> Any:
    """A config field that is also a flag: ``--name-with-dashes`` (or ``flag``).

    ``min``/``max`` are inclusive bounds, ``above`` an exclusive lower bound; ``None`` values are
    not checked (None means "not set: use the documented fallback"). ``cli=False`` keeps a field
    out of the command line and config files (state the program sets itself).
    """
    meta = {"help": help, "choices": choices, "min": min, "max": max, "above": above, "envvar": envvar,
            "shared": shared, "cli": cli, "flag": flag, "argument": argument, "metavar": metavar,
            "required": required}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type, *, shared: bool = False, exclude: tuple[str, ...] = (), **defaults: Any) -> Any:
    """A nested config; ``defaults`` override the class's own defaults for this owner only."""
    meta = {"section": cls, "shared": shared, "exclude": exclude}
    return dataclasses.field(default_factory=lambda: cls(**defaults), metadata=meta)


def internal(default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    """A field the program fills in (not an option)."""
    return option(default, default_factory=default_factory, help="", cli=False)


@dataclass(frozen=True)
class Spec:
    """One option as a command sees it: where it lives, its type, default and declaration."""

    name: str
    path: tuple[str, ...]  # section names from the job down to the config that declares it
    type: Any
    default: Any
    meta: Mapping[str, Any]

    @property
    def flag(self) -> str:
        return self.meta.get("flag") or "--" + self.name.replace("_", "-")


class Config:
    """Base of every config dataclass: checks declared bounds and choices on construction."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if "section" in f.metadata or not f.metadata.get("cli", True):
                continue
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and _accepts_float(hints[f.name]):
                setattr(self, f.name, value := float(value))
            check_bounds(f.name, value, f.metadata)


def label(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_bounds(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if value is None:
        return
    flag = meta.get("flag") or label(name)
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{flag} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high, above = meta.get("min"), meta.get("max"), meta.get("above")
        if value != value:  # NaN passes every comparison below
            raise ConfigError(f"{flag} must be a number, got {value}")
        if low is not None and high is not None and not low <= value <= high:
            raise ConfigError(f"{flag} must be in [{low:g}, {high:g}], got {value:g}")
        if low is not None and value < low:
            raise ConfigError(f"{flag} must be at least {low:g}, got {value:g}")
        if high is not None and value > high:
            raise ConfigError(f"{flag} must be at most {high:g}, got {value:g}")
        if above is not None and not value > above:
            raise ConfigError(f"{flag} must be greater than {above:g}, got {value:g}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _accepts_float(tp: Any) -> bool:
    return tp is float or float in typing.get_args(tp)


def base_type(tp: Any) -> tuple[Any, bool]:
    """``(T, optional)`` for ``T | None`` and ``T``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


# ---------------------------------------------------------------- the option tree


@functools.cache
def option_specs(cls: type) -> dict[str, tuple[Spec, ...]]:
    """Every option of ``cls``'s tree by name; a shared option has one Spec per config declaring it."""
    found: dict[str, list[Spec]] = {}
    _walk(cls, (), cls.__dataclass_fields__, None, (), found, shared=False)
    for name, specs in found.items():
        if len(specs) > 1 and not all(s.meta.get("shared") for s in specs):
            where = ", ".join(".".join(s.path) or "top" for s in specs)
            raise TypeError(f"option {name!r} is declared in several configs ({where}) but not shared")
    return {name: tuple(specs) for name, specs in found.items()}


def _walk(cls: type, path: tuple[str, ...], fields: Mapping[str, Any], instance: Any, exclude: tuple[str, ...],
          found: dict[str, list[Spec]], shared: bool) -> None:
    hints = _hints(cls)
    for f in fields.values():
        if f.name in exclude:
            continue
        if "section" in f.metadata:
            sub = f.default_factory()
            _walk(f.metadata["section"], (*path, f.name), sub.__dataclass_fields__, sub, f.metadata["exclude"],
                  found, shared or f.metadata["shared"])
            continue
        if not f.metadata.get("cli", True) or "help" not in f.metadata:
            continue
        if instance is not None:
            default = getattr(instance, f.name)
        elif f.default is not MISSING:
            default = f.default
        else:
            default = f.default_factory() if f.default_factory is not MISSING else None
        meta = {**f.metadata, "shared": f.metadata.get("shared") or shared}
        found.setdefault(f.name, []).append(Spec(f.name, path, hints[f.name], default, meta))


def sections(cls: type) -> set[str]:
    return {p for specs in option_specs(cls).values() for s in specs for p in s.path}


def build(cls: type, values: Mapping[str, Any], source: str = "") -> Any:
    """``cls`` with the given option values (flat, by option name) over its defaults, type-checked."""
    specs = option_specs(cls)
    prefix = f"{source}: " if source else ""
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in specs:
            raise ConfigError(f"{prefix}unknown option {name!r}")
        try:
            checked[name] = check_type(value, specs[name][0].type, name)
        except P2OError as err:
            raise ConfigError(f"{prefix}{err}") from None
    values = checked
    for name, specs_of in specs.items():
        if specs_of[0].meta.get("required") and values.get(name) in (None, "", []):
            raise ConfigError(f"missing {specs_of[0].flag} (or {name!r} in --config)")
    return check_tree(_construct(cls, dict(values)))


def _construct(cls: type, values: dict[str, Any], base: Any = None, exclude: tuple[str, ...] = ()) -> Any:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if "section" in f.metadata:
            sub_base = getattr(base, f.name) if base is not None else f.default_factory()
            kwargs[f.name] = _construct(f.metadata["section"], values, sub_base, f.metadata["exclude"])
        elif f.name in values and f.metadata.get("cli", True) and f.name not in exclude:
            kwargs[f.name] = values[f.name]
    if base is not None:
        return dataclasses.replace(base, **kwargs)
    return cls(**kwargs)


def check_tree(cfg: Any) -> Any:
    """Run each config's ``check()`` (checks too costly for construction, e.g. registry look-ups)."""
    for f in dataclasses.fields(cfg):
        if "section" in f.metadata:
            check_tree(getattr(cfg, f.name))
    if hasattr(cfg, "check"):
        cfg.check()
    return cfg


def to_dict(cfg: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The resolved options as nested plain data (what run directories record; ``flatten`` reads it)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if "section" in f.metadata:
            out[f.name] = to_dict(value, f.metadata["exclude"])
        elif f.metadata.get("cli", True) and "help" in f.metadata and f.name not in exclude:
            out[f.name] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def flatten(data: Mapping[str, Any], cls: type, source: str) -> dict[str, Any]:
    """Option values from nested config data (a TOML/YAML file or a saved ``config.json``).

    Keys may stand at the top level or inside the table of the section that declares them
    (``[train] lr = 1e-6``); ``[run]`` wraps a whole file; TRL/verl aliases and renamed keys of
    earlier p2o versions are mapped or named.
    """
    specs, known_sections = option_specs(cls), sections(cls)
    out: dict[str, Any] = {}

    def visit(table: Mapping[str, Any], within: str | None) -> None:
        for key, value in table.items():
            name = ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
            if isinstance(value, Mapping) and (name in known_sections or name == "run"):
                visit(value, None if name == "run" else name)
                continue
            if name in RENAMED and name not in specs:
                raise ConfigError(f"{source}: key {key!r} is now {RENAMED[name]!r}")
            if name not in specs:
                raise ConfigError(f"{source}: unknown key {key!r}")
            if within is not None and not any(within in s.path for s in specs[name]):
                raise ConfigError(f"{source}: key {key!r} does not belong in [{within}]")
            out[name] = value

    visit(data, None)
    return out


def read_config_file(path: str | Path, cls: type) -> dict[str, Any]:
    """Flat option values from a TOML file (YAML when it ends in .yaml/.yml)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config file ({err})") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: {str(err).splitlines()[0]}") from None
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: {err}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a table of keys")
    return flatten(data, cls, str(path))


# ---------------------------------------------------------------- options several stages share


def seed_option() -> Any:
    return option(0, help="Random seed.", shared=True)


def temperature_option() -> Any:
    return option(0.6, min=0.0, shared=True,
                  help="Rollout sampling temperature; the trainer divides logits by the same value.")


def k_option() -> Any:
    return option(6, min=1, shared=True, help="Rollouts per problem (the GRPO group), one template each.")


def model_option(help: str = "Model directory (Hugging Face layout) or hub id.") -> Any:
    return option("", required=True, help=help)
