"""One registry pattern for tasks, methods, metrics, backends and attacks.

Each kind of plugin has a :class:`Registry`; a plugin registers itself with a decorator at
its definition (``@METRICS.register("rouge_l", "ROUGE-L recall of the greedy answer")``).
Registries are filled lazily: the first lookup imports the modules that hold the built-in
plugins, so ``import bench`` stays cheap. Unknown names raise a :class:`BenchError` that
lists the close matches.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str


class Registry(Generic[T]):
    """A name → plugin map for one kind of plugin (``kind`` is used in messages)."""

    def __init__(self, kind: str, modules: Iterable[str] = (), entry_point_group: str | None = None):
        self.kind = kind
        self._modules = tuple(modules)
        self._entry_point_group = entry_point_group
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (a one-line ``description`` for listings)."""

        def deco(obj: T) -> T:
            self.add(name, obj, description)
            return obj

        return deco

    def add(self, name: str, obj: T, description: str = "") -> None:
        if name in self._entries and self._entries[name].obj is not obj:
            raise BenchError(f"{self.kind} '{name}' is registered twice")
        doc = description or getattr(obj, "description", "") or ""
        if not doc:
            lines = (getattr(obj, "__doc__", None) or "").strip().splitlines()
            doc = lines[0] if lines else ""
        self._entries[name] = Entry(name, obj, doc)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for mod in self._modules:
            importlib.import_module(mod)
        if self._entry_point_group:
            from importlib.metadata import entry_points

            for ep in entry_points(group=self._entry_point_group):
                if ep.name not in self._entries:
                    self.add(ep.name, ep.load(), f"(entry point {ep.value})")

    def get(self, name: str) -> T:
        """The plugin registered as ``name``; a BenchError with close matches otherwise."""
        self._load()
        if name in self._entries:
            return self._entries[name].obj
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise BenchError(
            f"unknown {self.kind} '{name}'{hint} (see `bench list {self.kind}s`)"
        )

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def entries(self) -> list[Entry[T]]:
        self._load()
        return sorted(self._entries.values(), key=lambda e: e.name)

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]


def _lazy(kind: str, modules: list[str], group: str | None = None) -> Registry[Any]:
    return Registry(kind, modules, group)


TASKS: Registry[Any] = _lazy("task", ["bench.tasks"], "bench.tasks")
METHODS: Registry[Any] = _lazy("method", ["bench.methods"], "bench.methods")
METRICS: Registry[Any] = _lazy("metric", ["bench.metrics"], "bench.metrics")
BACKENDS: Registry[Any] = _lazy("backend", ["bench.backends"], "bench.backends")
ATTACKS: Registry[Any] = _lazy("attack", ["bench.attacks"], "bench.attacks")
