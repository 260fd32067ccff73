"""A small generic registry: decorator registration plus lazy ``"module:Attr"`` entries, and third-party plugins
declared as package entry points (groups in ``ENTRY_POINT_GROUPS``).

Lazy entries keep ``evalsuite --help`` and ``evalsuite ls`` free of heavy imports (torch): the module
that defines a task type or source kind is imported only when that name is first used. Entry points are read
only when a name is not registered in code or when the names are listed, and a plugin's module is imported only
when its name is used; a plugin that cannot be imported, or that is not the kind's class (``PLUGIN_BASES``), is a
``PluginError`` naming it and its distribution.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from typing import Callable, Generic, Iterator, Optional, TypeVar

from .errors import UnknownNameError, UserInputError

T = TypeVar("T")
log = logging.getLogger("evalsuite")

# registry kind -> the entry-point group third-party packages declare their entries in, e.g. in pyproject.toml:
#   [project.entry-points."evalsuite.adapters"]
#   my_adapter = "my_package.adapter:MyAdapter"
ENTRY_POINT_GROUPS = {"model adapter": "evalsuite.adapters", "data source kind": "evalsuite.sources",
                      "task type": "evalsuite.task_types"}
# registry kind -> the class its plugins must subclass ("module:Class", imported only when a plugin is loaded)
PLUGIN_BASES = {"model adapter": "evalsuite.models.base:ModelAdapter",
                "data source kind": "evalsuite.data.base:DataSource", "task type": "evalsuite.tasks.base:Task"}


class PluginError(UserInputError):
    """A plugin (package entry point) that cannot be loaded: its name, group and distribution are named."""


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str, group: Optional[str] = None, base: Optional[str] = None) -> None:
        self.kind = kind
        self.group = group or ENTRY_POINT_GROUPS.get(kind)  # entry-point group of plugins; None: code only
        self.base = base or PLUGIN_BASES.get(kind)  # "module:Class" a plugin must subclass; None: anything
        self._loaded: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._plugins: Optional[dict[str, list]] = None  # name -> its entry points (several: a conflict)

    def _claim(self, name: str) -> None:
        """Take ``name`` for a code registration: twice is an error; a plugin of that name read earlier is dropped,
        so that ``plugin_origin`` follows what ``get`` serves (code registrations win)."""
        if name in self._loaded or name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        for ep in (self._plugins or {}).pop(name, []):
            log.warning("plugin %s %r from %s ignored: the name is registered in code", self.kind, name,
                        _distribution(ep))

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")``."""

        def wrap(obj: T) -> T:
            if self._lazy.get(name) is not None and self._points_to(name, obj):
                # the lazy entry's module is being imported and registers the very object it names
                self._lazy.pop(name)
            self._claim(name)
            self._loaded[name] = obj
            return obj

        return wrap

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:Attr"``; imported on first ``get``."""
        if ":" not in target:
            raise ValueError(f"lazy {self.kind} target must look like 'pkg.module:Attr', got {target!r}")
        self._claim(name)
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
        if name in self._entry_points():
            return self._load_plugin(name)
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}.{did_you_mean(name, self.names())}"
            f" Known: {', '.join(self.names()) or '(none)'}"
        )

    def names(self) -> list[str]:
        return sorted(set(self._loaded) | set(self._lazy) | set(self._entry_points()))

    def plugin_origin(self, name: str) -> Optional[str]:
        """``distribution version`` of a name that comes from a plugin, None for one registered in code."""
        if name not in self._entry_points():  # names registered in code are left out when plugins are read
            return None
        return " / ".join(_distribution(ep) for ep in self._entry_points()[name])

    def _entry_points(self) -> dict[str, list]:
        """This registry's plugins, read once from the installed distributions' metadata."""
        if self._plugins is None:
            self._plugins = {}
            if self.group is None:
                return self._plugins
            import importlib.metadata as md

            try:
                found = md.entry_points(group=self.group)
            except Exception as exc:  # noqa: BLE001 - broken metadata of some package must not stop evalsuite
                log.warning("cannot read the %s plugins (entry points %s): %s: %s", self.kind, self.group,
                            type(exc).__name__, exc)
                return self._plugins
            for ep in found:
                if ep.name in self._loaded or ep.name in self._lazy:  # code registrations win; say so once
                    log.warning("plugin %s %r from %s ignored: the name is registered in code", self.kind, ep.name,
                                _distribution(ep))
                    continue
                entries = self._plugins.setdefault(ep.name, [])
                if all(e.value != ep.value for e in entries):  # one package on sys.path twice is no conflict
                    entries.append(ep)
        return self._plugins

    def _load_plugin(self, name: str) -> T:
        entries = self._entry_points()[name]
        where = f"entry point {self.group}: {name}"
        if len(entries) > 1:
            raise PluginError(f"{self.kind} {name!r} is declared by several plugins ({where} in "
                              f"{', '.join(f'{_distribution(e)} ({e.value})' for e in entries)}); uninstall one")
        (ep,) = entries
        plugin = f"{self.kind} {name!r} of plugin {_distribution(ep)} ({where} = {ep.value})"
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - whatever the plugin's import raises, name the plugin
            first = (str(exc).strip().splitlines() or [""])[0]
            raise PluginError(f"{plugin} cannot be loaded: {type(exc).__name__}: {first}; fix or uninstall that"
                              " package") from exc
        self._check_type(obj, plugin)
        self._loaded.setdefault(name, obj)
        return self._loaded[name]

    def _check_type(self, obj: object, plugin: str) -> None:
        """A plugin must be a subclass of the kind's base class: anything else would fail far from its cause."""
        if self.base is None:
            return
        module_name, attr = self.base.split(":")
        base = getattr(importlib.import_module(module_name), attr)
        if not (isinstance(obj, type) and issubclass(obj, base)):
            qualname = getattr(obj, "__qualname__", None)
            what = (f"the class {obj.__module__}.{qualname}" if isinstance(obj, type) else f"a {type(obj).__name__}"
                    + (f" ({getattr(obj, '__module__', None)}.{qualname})" if qualname else ""))
            raise PluginError(f"{plugin} is {what}, not a subclass of {module_name}.{attr}; fix or uninstall that"
                              " package")

    def __contains__(self, name: str) -> bool:
        return name in self._loaded or name in self._lazy or name in self._entry_points()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _distribution(ep) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "(unknown distribution)"
