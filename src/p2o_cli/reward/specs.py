"""Where a ``--reward SPEC`` leads: a registered name (:mod:`.registry`), ``regex:PATTERN``,
``package.module:function`` (importable) or ``path/to/file.py:function``; and the component a
command scores with it."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import P2OError
from . import builtins, code  # noqa: F401 - the built-ins register themselves on import
from .registry import REWARDS

# Built-ins that take their argument in the SPEC (``regex:PATTERN``): name -> the keyword it fills.
SPEC_ARGUMENTS = {"regex": "pattern"}


@dataclass(frozen=True)
class Component:
    """One reward of a command, as the scorer runs it (picklable: workers resolve it again)."""

    spec: str  # as the user wrote it
    name: str  # its key in rollout records and metrics
    target: str  # a registered name, an importable "module:function", or "/abs/path/file.py:function"
    weight: float = 1.0
    options: tuple[tuple[str, Any], ...] = ()  # keyword arguments bound to the function
    time_limit: float = 5.0  # seconds per response before the response scores 0


def split_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """(target, options) of a SPEC: a name, ``regex:PATTERN``, ``module:function`` or ``file.py:function``.

    File paths are made absolute here, so worker processes find them whatever their directory.
    """
    spec = spec.strip()
    if not spec:
        raise P2OError("--reward: empty reward name")
    head, sep, tail = spec.partition(":")
    if sep and head in SPEC_ARGUMENTS:
        if not tail:
            raise P2OError(f"--reward {head}: give the argument after the colon ({head}:…)")
        return head, {SPEC_ARGUMENTS[head]: tail}
    if ":" not in spec:
        return spec, {}
    where, _, function = spec.rpartition(":")
    if not where or not function.isidentifier():
        raise P2OError(f"--reward {spec!r}: expected NAME, module:function or path/to/file.py:function")
    if _is_path(where):
        path = Path(where).expanduser()
        if not path.is_file():
            raise P2OError(f"--reward {spec!r}: no such file {where}")
        return f"{path.resolve()}:{function}", {}
    return spec, {}


def _is_path(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def component_name(target: str) -> str:
    """What a component is called in records and metrics: the registered name or the function's."""
    return target.rpartition(":")[2] if ":" in target else target


def load_reward(target: str) -> Callable[..., Sequence[float | None]]:
    """The function ``target`` names (P2OError saying what is wrong if there is none)."""
    if ":" not in target:
        return REWARDS.get(target)
    where, _, name = target.rpartition(":")
    module = _load_file(where) if _is_path(where) else _import(where)
    function = getattr(module, name, None)
    if not callable(function):
        raise P2OError(f"reward {target}: {where} has no function {name!r}")
    return function


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise P2OError(f"reward {module}: cannot import it ({err}); for a file give path/to/file.py:function") \
            from None


def _load_file(path: str) -> Any:
    """A reward file as a module of its own, loaded once per process."""
    key = "p2o_reward_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise P2OError(f"reward file {path}: cannot be loaded as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[key]
        raise P2OError(f"reward file {path}: {type(err).__name__}: {err}") from None
    return module
