"""Shared instances by name, each built on first use from a ``"module:Class"`` spec.

The adapters (``ingest.venues``) and the simulator's server halves
(``ingest.simulator.venues``) are both looked up by exchange name this way: one exchange's
module costs nothing to the others, and every caller shares the same instance.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LazyRegistry(Generic[T]):
    """``get(name)``: the ``kind`` instance ``make(cls, name)`` builds from the class that
    ``specs[name]`` names, once; ``KeyError`` naming the known ones for any other name."""

    def __init__(
        self,
        kind: type[Any],  # T, which may be abstract (mypy takes no abstract type[T])
        specs: Mapping[str, str],
        what: str,
        make: Callable[[Any, str], T],
    ) -> None:
        self.kind = kind
        self.specs = dict(specs)
        self.names = tuple(specs)
        self.what = what
        self.make = make
        self.built: dict[str, T] = {}

    def get(self, name: str) -> T:
        item = self.built.get(name)
        if item is None:
            spec = self.specs.get(name)
            if spec is None:
                raise KeyError(f"unknown {self.what} {name!r}; known: {', '.join(self.names)}")
            module, cls = spec.split(":")
            item = self.make(getattr(importlib.import_module(module), cls), name)
            if not isinstance(item, self.kind):
                raise TypeError(f"{spec} built a {type(item).__name__}, not a {self.kind}")
            self.built[name] = item
        return item
