"""A small generic registry: decorator registration plus lazy ``"module:Attr"`` entries.

Lazy entries keep ``evalsuite --help`` and ``evalsuite ls`` free of heavy imports (torch): the module
that defines a task type or source kind is imported only when that name is first used.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._loaded: dict[str, T] = {}
        self._lazy: dict[str, str] = {}

    def _check_free(self, name: str) -> None:
        if name in self._loaded or name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is registered twice")

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")``."""

        def wrap(obj: T) -> T:
            if self._lazy.get(name) is not None and self._points_to(name, obj):
                # the lazy entry's module is being imported and registers the very object it names
                self._lazy.pop(name)
            self._check_free(name)
            self._loaded[name] = obj
            return obj

        return wrap

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:Attr"``; imported on first ``get``."""
        if ":" not in target:
            raise ValueError(f"lazy {self.kind} target must look like 'pkg.module:Attr', got {target!r}")
        self._check_free(name)
        self._lazy[name] = target

    def _points_to(self, name: str, obj: object) -> bool:
        module, attr = self._lazy[name].split(":")
        return getattr(obj, "__module__", None) == module and getattr(obj, "__name__", None) == attr

    def get(self, name: str) -> T:
        if name in self._loaded:
            return self._loaded[name]
        if name in self._lazy:
            module_name, attr = self._lazy[name].split(":")
            module = importlib.import_module(module_name)
            obj = getattr(module, attr)
            self._lazy.pop(name, None)
            self._loaded.setdefault(name, obj)
            return self._loaded[name]
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}.{did_you_mean(name, self.names())}"
            f" Known: {', '.join(self.names()) or '(none)'}"
        )

    def names(self) -> list[str]:
        return sorted(set(self._loaded) | set(self._lazy))

    def __contains__(self, name: str) -> bool:
        return name in self._loaded or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
