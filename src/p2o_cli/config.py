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
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, ClassVar

from .errors import ConfigError, P2OError, RecordError
from .files.records import check_type, read_bounded
from .plugins import Registry

MAX_CONFIG_BYTES = 1 << 20  # a config file is a page of keys, not a stream

# TRL / verl names for the p2o option they mean: accepted as flags and as config-file keys.
ALIASES: dict[str, str] = {
    "num_generations": "k",
    "max_completion_length": "max_new_tokens",
    "beta": "kl_coef",
    "epsilon": "clip_low",
    "epsilon_high": "clip_high",
    "learning_rate": "lr",
}
# Keys of earlier p2o config files: renamed ones still work (in files only), ones whose meaning changed are named.
OLD_KEYS: dict[str, str] = {"eval_data_dir": "data_dir", "eval_bench": "bench"}
RENAMED: dict[str, str] = {"no_std_norm": "std_norm = false"}
# Sampling where no option says otherwise: the options' defaults, and engines' generate() takes the same.
TEMPERATURE = 0.6
MAX_NEW_TOKENS = 1024


def aliases_of(name: str) -> tuple[str, ...]:
    """The TRL/verl names of option ``name``."""
    return tuple(alias for alias, target in ALIASES.items() if target == name)


def option(
    default: Any = MISSING,
    *,
    help: str,
    default_factory: Callable[[], Any] | Any = MISSING,
    choices: tuple[str, ...] | None = None,
    registry: Registry[Any] | None = None,
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
    unset: str | None = None,
    follows: str | None = None,
    scale: float = 1.0,
    panel: str | None = None,
) -> Any:
    """A config field that is also a flag: ``--name-with-dashes`` (or ``flag``).

    ``min``/``max`` are inclusive bounds, ``above`` an exclusive lower bound; ``None`` values are
    not checked. A ``None`` default needs ``unset``: what happens then, which ``--help`` prints as
    the default (a fallback that depends on run-time data, such as a benchmark's own protocol).
    ``follows``: when not given, the option takes that other option's value (times ``scale``) in
    every command that has it, and ``default`` elsewhere. ``registry``: the value names one of its
    entries, listed in ``--help``. ``panel``: the ``--help`` panel, where not the section's.
    ``cli=False`` keeps a field out of the command line and config files (state the program sets itself).
    """
    meta = {"help": help, "choices": choices, "registry": registry, "min": min, "max": max, "above": above,
            "envvar": envvar, "shared": shared, "cli": cli, "flag": flag, "argument": argument, "metavar": metavar,
            "required": required, "unset": unset, "follows": follows, "scale": scale, "panel": panel}
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
    panel: str | None = None  # the --help panel: the option's own, else its section's (None: the job's)

    @property
    def flag(self) -> str:
        return self.meta.get("flag") or "--" + self.name.replace("_", "-")


class Config:
    """Base of every config dataclass: checks declared bounds and choices on construction.

    ``PANEL`` names the ``--help`` panel of the options a config declares (and of the sections
    inside it that name none).
    """

    PANEL: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        for f in fields:  # an unset option that follows another of this config takes its value
            target = f.metadata.get("follows")
            if getattr(self, f.name) is None and target in hints:
                setattr(self, f.name, _followed(getattr(self, target), f.metadata))
        for f in fields:
            if "section" in f.metadata or not f.metadata.get("cli", True):
                continue
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and _accepts_float(hints[f.name]):
                setattr(self, f.name, value := float(value))
            check_bounds(f.name, value, f.metadata)


def _followed(value: Any, meta: Mapping[str, Any]) -> Any:
    return value if meta.get("scale", 1.0) == 1.0 else value * meta["scale"]


def label(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_bounds(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    """A declared choice and range; every number must be finite (an infinite learning rate, weight
    decay, temperature or timeout is never what anyone meant: it trains NaN or waits forever)."""
    if value is None:
        return
    flag = meta.get("flag") or label(name)
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{flag} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high, above = meta.get("min"), meta.get("max"), meta.get("above")
        if isinstance(value, float) and not math.isfinite(value):  # NaN would also pass every comparison
            raise ConfigError(f"{flag} must be a finite number, got {value}")
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
    _walk(cls, (), cls.__dataclass_fields__, None, (), found, shared=False, panel=None)
    for name, specs in found.items():
        if len(specs) > 1 and not all(s.meta.get("shared") for s in specs):
            where = ", ".join(".".join(s.path) or "top" for s in specs)
            raise TypeError(f"option {name!r} is declared in several configs ({where}) but not shared")
    return {name: tuple(specs) for name, specs in found.items()}


def _walk(cls: type, path: tuple[str, ...], fields: Mapping[str, Any], instance: Any, exclude: tuple[str, ...],
          found: dict[str, list[Spec]], shared: bool, panel: str | None) -> None:
    hints = _hints(cls)
    panel = getattr(cls, "PANEL", None) or panel
    for f in fields.values():
        if f.name in exclude:
            continue
        if "section" in f.metadata:
            sub = f.default_factory()
            _walk(f.metadata["section"], (*path, f.name), sub.__dataclass_fields__, sub, f.metadata["exclude"],
                  found, shared or f.metadata["shared"], panel)
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
        spec = Spec(f.name, path, hints[f.name], default, meta, f.metadata.get("panel") or (panel if path else None))
        found.setdefault(f.name, []).append(spec)


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
    for name, specs_of in specs.items():
        target = specs_of[0].meta.get("follows")
        if name not in values and target in specs:
            values[name] = _followed(values.get(target, specs[target][0].default), specs_of[0].meta)
    return check_tree(_construct(cls, dict(values)))


def resolve(cls: type, flags: Mapping[str, Any], config_file: str | None = None,
            base: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None) -> tuple[Any, frozenset[str]]:
    """``cls`` from its layers: defaults < ``base`` < the config file < the flags.

    ``base(above)`` sees the values of the file and the flags (e.g. ``--resume RUN_DIR``, or the
    checkpoint a train-step continues) and returns the layer under them. Also returns the names
    the user set, in the file or by flag.
    """
    above = dict(read_config_file(config_file, cls)) if config_file else {}
    above.update(flags)
    values = {**(base(above) if base else {}), **above}
    return build(cls, values), frozenset(above)


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
    earlier p2o versions are mapped or named. An alias and its option's own key (``num_generations``
    and ``[rollout] k``) in one file is an error naming both.
    """
    specs, known_sections = option_specs(cls), sections(cls)
    out: dict[str, Any] = {}
    spelled: dict[str, tuple[str, str]] = {}  # option name -> (the key that set it, where)

    def visit(table: Mapping[str, Any], within: str | None) -> None:
        for key, value in table.items():
            plain = key.replace("-", "_")
            name = ALIASES.get(plain) or OLD_KEYS.get(plain) or plain
            if isinstance(value, Mapping) and (name in known_sections or name == "run"):
                visit(value, None if name == "run" else name)
                continue
            if name in RENAMED and name not in specs:
                raise ConfigError(f"{source}: key {key!r} is now {RENAMED[name]!r}")
            if name not in specs:
                raise ConfigError(f"{source}: unknown key {key!r}")
            if within is not None and not any(within in s.path for s in specs[name]):
                raise ConfigError(f"{source}: key {key!r} does not belong in [{within}]")
            first, where = spelled.setdefault(name, (plain, f"[{within}] {key}" if within else key))
            if first != plain:  # a shared option may repeat (saved configs do), but under one name
                this = f"[{within}] {key}" if within else key
                raise ConfigError(f"{source}: {where!r} and {this!r} both set {specs[name][0].flag}; keep one")
            out[name] = value

    visit(data, None)
    return out


def read_config_file(path: str | Path, cls: type) -> dict[str, Any]:
    """Flat option values from a TOML file (YAML when it ends in .yaml/.yml)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = read_bounded(path, MAX_CONFIG_BYTES).decode("utf-8")
    except RecordError as err:
        raise ConfigError(str(err)) from None
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
    values = flatten(data, cls, str(path))
    specs = option_specs(cls)
    for name, value in values.items():  # wrong types and ranges name the file they are in
        try:
            check_bounds(name, check_type(value, specs[name][0].type, name), specs[name][0].meta)
        except P2OError as err:
            raise ConfigError(f"{path}: {err}") from None
    return values


# ---------------------------------------------------------------- options several stages share


def seed_option() -> Any:
    return option(0, help="Random seed.", shared=True)


def temperature_option() -> Any:
    return option(TEMPERATURE, min=0.0, shared=True,
                  help="Rollout sampling temperature; the trainer divides logits by the same value.")


def k_option() -> Any:
    return option(6, min=1, shared=True, help="Rollouts per problem (the GRPO group), one template each.")


MODEL_PANEL = "Model & engine"


def model_option(help: str = "Model directory (Hugging Face layout) or hub id.") -> Any:
    return option("", required=True, metavar="PATH", panel=MODEL_PANEL, help=help)
