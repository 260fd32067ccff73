"""Strict YAML reading: duplicate keys are errors and every mapping remembers its line numbers.

Safe by construction: SafeLoader (no ``!!python`` tags), UTF-8 only, plain scalar keys only, no aliases (an
alias bomb, "billion laughs", would otherwise expand to gigabytes) and a bounded nesting depth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


class LineDict(dict):
    """A dict from YAML that knows the line (1-based) of itself and of each key."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


MAX_DEPTH = 64  # nested mappings/lists; task files use 4


class _StrictComposer(yaml.composer.Composer):
    """The Composer with evalsuite's limits: no aliases, nesting at most MAX_DEPTH."""

    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"{self.name}:{event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not"
                              " allowed in evalsuite files; write the value out")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(f"{self.name}:{mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


if yaml.__with_libyaml__:
    # libyaml scans and parses (9x faster over the 116 task and prompt files: the catalogue and prompt banks are
    # read on every run); composing stays in Python, so the checks above see every event. Same nodes and marks.
    from yaml._yaml import CParser

    class _StrictLoader(_StrictComposer, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _StrictComposer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
else:
    class _StrictLoader(_StrictComposer, yaml.SafeLoader):  # type: ignore[no-redef]
        pass


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)):
            raise ConfigError(f"{loader.name}:{line}: a key must be a plain name, not a {type(key).__name__}")
        if key in result:
            raise ConfigError(
                f"{loader.name}:{line}: duplicate key {key!r} (first at line {result.key_lines[key]})"
            )
        result[key] = loader.construct_object(value_node, deep=deep)
        result.key_lines[key] = line
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> Any:
    """Parse one YAML file strictly; syntax errors and duplicate keys name the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start});"
                          " save it as UTF-8") from None
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        if "maximum nesting depth" in str(exc.problem):  # libyaml's own limit (1000), met before ours
            raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels") from exc
        raise ConfigError(f"{where}: invalid YAML: {exc.problem}") from exc
    finally:
        loader.dispose()
