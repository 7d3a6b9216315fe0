"""Registries of named functions, which installed packages extend through Python entry points.

p2o's own functions register with a decorator where they are defined (``@ESTIMATORS.register("grpo")``).
Any installed distribution adds its own under the registry's entry-point group, the way
pytest plug-ins do, without touching p2o::

    [project.entry-points."p2o.reflectors"]
    toy = "p2o_cli.toy.reflector:toy_reflector"

Entry points are read the first time a name is missing or the names are listed, and loaded
only when their name is asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import EntryPoint, EntryPoints, entry_points
from typing import Generic, TypeVar

from .errors import P2OError

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    """Functions of one kind by name: registered in code, or found in the entry-point ``group``."""

    def __init__(self, kind: str, group: str, builtin: tuple[str, ...] = ()) -> None:
        # ``builtin``: the names p2o's own module registers when it is imported, so that
        # names() can list them without importing it (a test checks the two agree).
        self.kind, self.group, self.builtin = kind, group, builtin
        self._table: dict[str, F] = {}
        self._entry_points: dict[str, EntryPoint] | None = None

    def register(self, *names: str) -> Callable[[F], F]:
        """Decorator: ``fn`` under each of ``names`` (a name taken by another function is an error)."""
        if not names:
            raise ValueError(f"register a {self.kind} under at least one name")

        def decorator(fn: F) -> F:
            for name in names:
                if self._table.get(name, fn) is not fn:
                    raise ValueError(f"{self.kind} {name!r} is already registered")
            for name in names:
                self._table[name] = fn
            return fn

        return decorator

    def unregister(self, name: str) -> None:
        """Forget ``name`` (tests that register a function of their own clean up with this)."""
        self._table.pop(name, None)

    def get(self, name: str) -> F:
        """The function registered as ``name``; P2OError listing the known names otherwise."""
        if name not in self._table and name in self._plugins():
            self._table[name] = self._plugins()[name].load()
        try:
            return self._table[name]
        except KeyError:
            raise P2OError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'}") from None

    def names(self) -> list[str]:
        """Every name, registered or offered by an installed package, sorted."""
        return sorted({*self.builtin, *self._table, *self._plugins()})

    def registered(self) -> list[str]:
        """The names registered in code so far (not the ones only offered through entry points)."""
        return sorted(self._table)

    def __contains__(self, name: str) -> bool:
        return name in self.builtin or name in self._table or name in self._plugins()

    def _plugins(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in _installed().select(group=self.group)}
        return self._entry_points


@functools.cache
def _installed() -> EntryPoints:
    """Every installed package's entry points, read once (each read scans every package's metadata)."""
    return entry_points()
