"""One generic registry type, one instance per component family.

Every extensible thing in oodbench (architectures, model adapters, datasets, metrics, and later
attacks and trainers) is found by name through a :class:`Registry`. Adding an entry is one
decorated function or class next to its implementation; nothing else has to change. Entries may be
lazy ``"module:attr"`` strings so that heavy dependencies (robustbench, pyautoattack) are imported
only when a suite asks for them. Third-party packages plug in through the entry-point group
``oodbench.plugins``: each entry point names a module that registers its components on import.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from oodbench.errors import OodbenchError

T = TypeVar("T")

PLUGIN_GROUP = "oodbench.plugins"


class UnknownNameError(OodbenchError, KeyError):
    """Raised for a name that is not registered; the message lists the closest names."""

    def __init__(self, family: str, name: str, known: list[str]):
        self.family, self.name, self.known = family, name, known
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(
            f"unknown {family} {name!r}.{hint} Registered {family}: {', '.join(known) or '(none)'}."
            f" Run `oodbench list {family}` to see them with descriptions."
        )

    def __str__(self) -> str:  # KeyError would otherwise print the message with quotes
        return self.args[0]


@dataclass
class Entry(Generic[T]):
    """A registered component: the object itself (or a lazy import path) plus its metadata."""

    name: str
    target: T | str
    doc: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> T:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            self.target = getattr(importlib.import_module(module), attr)
        return self.target  # type: ignore[return-value]


def _first_line(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """Name → component mapping for one family, with lazy entries and helpful errors.

    Names are lower-case with dashes (``adversarial-noise``, ``cifar10``); a duplicate name is an
    error, so two plugins cannot silently shadow each other.
    """

    def __init__(self, family: str):
        self.family = family
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, doc: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator: ``@datasets.register("mnist", shape=(1, 28, 28))``."""

        def decorator(obj: T) -> T:
            self.add(name, obj, doc=doc if doc is not None else _first_line(obj), **meta)
            return obj

        return decorator

    def add(self, name: str, target: T | str, *, doc: str = "", **meta: Any) -> None:
        if name != name.lower() or " " in name or "_" in name:
            raise ValueError(f"{self.family} name {name!r} must be lower-case with dashes")
        if name in self._entries:
            raise ValueError(f"{self.family} {name!r} is registered twice")
        self._entries[name] = Entry(name, target, doc, dict(meta))

    def entry(self, name: str) -> Entry[T]:
        _load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.family, name, sorted(self._entries)) from None

    def get(self, name: str) -> T:
        return self.entry(name).load()

    def meta(self, name: str) -> dict[str, Any]:
        return self.entry(name).meta

    def names(self) -> list[str]:
        _load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        _load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self.names())


# Modules whose import registers the built-in components. Listed once here so that a lookup
# never depends on which module the caller happened to import first.
BUILTIN_MODULES = (
    "oodbench.models.architectures",
    "oodbench.models.adapters",
    "oodbench.models.libraries",
    "oodbench.data",
    "oodbench.metrics",
    "oodbench.attacks",
    "oodbench.detectors",
    "oodbench.checks",
    "oodbench.train.methods",
    "oodbench.execute.local",
)


_plugins_loaded = False


def _load_plugins() -> None:
    """Import the built-in component modules and every ``oodbench.plugins`` entry point, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        ep.load()


# The families. Components register themselves into these on import of their module.
architectures: Registry[Callable[..., Any]] = Registry("architectures")
models: Registry[Callable[..., Any]] = Registry("models")
datasets: Registry[Callable[..., Any]] = Registry("datasets")
metrics: Registry[Any] = Registry("metrics")
objectives: Registry[Callable[..., Any]] = Registry("objectives")
attacks: Registry[Any] = Registry("attacks")
trainers: Registry[Any] = Registry("trainers")
executors: Registry[Any] = Registry("executors")
detectors: Registry[Any] = Registry("detectors")
checks: Registry[Any] = Registry("checks")

FAMILIES: dict[str, Registry[Any]] = {
    r.family: r for r in (architectures, models, datasets, metrics, objectives, attacks, trainers,
                          executors, detectors, checks)
}
