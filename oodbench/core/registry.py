"""One generic registry type, one instance per component family.

Every extensible thing in oodbench (architectures, model adapters, datasets, metrics, objectives,
attacks, trainers, executors, detectors, trust checks, report layouts and report formats) is found
by name through a :class:`Registry`. Adding an entry is one decorated function or class next to
its implementation; nothing else has to change. Entries may be lazy ``"module:attr"`` strings so
that heavy dependencies (robustbench, pyautoattack) are imported only when a suite asks for them.

Each family names the packages that hold its built-in components. On the family's first lookup
the registry imports every module in them (a package scan, once), so a new component is one file
dropped into its family's folder: no import line in a package ``__init__``, no central list. A
module in those folders must therefore be cheap to import: heavy optional libraries (timm,
transformers, robustbench, pyautoattack, ray) are imported inside the functions that use them.
Third-party packages plug in through the entry-point group ``oodbench.plugins``: each entry point
names a module that registers its components on import (loaded once, on the first lookup of any
family).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from oodbench.core.errors import OodbenchError

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

    def __init__(self, family: str, packages: tuple[str, ...] = ()):
        self.family = family
        #: Modules or packages (scanned with every module below them) whose import registers the
        #: family's built-in components.
        self.packages = packages
        self._entries: dict[str, Entry[T]] = {}
        self._discovered = False

    def _discover(self) -> None:
        """Import the family's packages and the plugins, once. Marked done first: a module that
        looks its own family up while being imported sees what is registered so far."""
        if self._discovered:
            return
        self._discovered = True
        for package in self.packages:
            import_tree(package)
        _load_plugins()

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
        self._discover()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.family, name, sorted(self._entries)) from None

    def get(self, name: str) -> T:
        return self.entry(name).load()

    def meta(self, name: str) -> dict[str, Any]:
        return self.entry(name).meta

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self.names())


def import_tree(name: str) -> list[str]:
    """Import the module ``name`` and, for a package, every module and subpackage below it (in
    file-name order); returns the names imported. This is the package scan that finds built-in
    components without a list of their modules."""
    module = importlib.import_module(name)
    done = [name]
    for info in pkgutil.iter_modules(getattr(module, "__path__", None) or []):
        done += import_tree(f"{name}.{info.name}")
    return done


_plugins_loaded = False


def _load_plugins() -> None:
    """Import every ``oodbench.plugins`` entry point, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        ep.load()


# The families, each with the folders its built-ins live in. Components register themselves
# into these on import of their module; a family's folders are scanned on its first lookup.
architectures: Registry[Callable[..., Any]] = Registry("architectures",
                                                       ("oodbench.models.architectures",))
models: Registry[Callable[..., Any]] = Registry("models", ("oodbench.models.adapters",
                                                           "oodbench.models.libraries"))
datasets: Registry[Callable[..., Any]] = Registry("datasets", ("oodbench.data",))
metrics: Registry[Any] = Registry("metrics", ("oodbench.metrics",))
# the attack objectives, and the training losses that are objectives too (logit-margin)
objectives: Registry[Callable[..., Any]] = Registry("objectives", ("oodbench.attacks",
                                                                   "oodbench.train"))
attacks: Registry[Any] = Registry("attacks", ("oodbench.attacks",))
trainers: Registry[Any] = Registry("trainers", ("oodbench.train",))
executors: Registry[Any] = Registry("executors", ("oodbench.pipeline.execute",))
detectors: Registry[Any] = Registry("detectors", ("oodbench.detectors",))
checks: Registry[Any] = Registry("checks", ("oodbench.checks",))
layouts: Registry[Callable[..., Any]] = Registry("layouts", ("oodbench.report.layouts",))
formats: Registry[Any] = Registry("formats", ("oodbench.report.formats",))

FAMILIES: dict[str, Registry[Any]] = {
    r.family: r for r in (architectures, models, datasets, metrics, objectives, attacks, trainers,
                          executors, detectors, checks, layouts, formats)
}
