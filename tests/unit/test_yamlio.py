"""The strict YAML reader parses with libyaml where PyYAML has it, and reads every shipped file exactly as the
pure-Python parser does: the same values, line numbers and errors."""

import pytest
import yaml

from evalsuite import yamlio
from evalsuite.errors import ConfigError
from evalsuite.resources import builtin_root


class _PurePythonLoader(yamlio._StrictComposer, yaml.SafeLoader):
    pass


_PurePythonLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, yamlio._construct_mapping)


def _parse(loader_class, text: str, name: str):
    loader = loader_class(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _with_lines(value):
    if isinstance(value, yamlio.LineDict):
        return value.line, value.key_lines, {k: _with_lines(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_lines(v) for v in value]
    return value


def _shipped_files():
    root = builtin_root()
    return sorted([*(root / "tasks").rglob("*.yaml"), *(root / "prompts").rglob("*.yaml")])


def test_libyaml_parses_when_pyyaml_has_it():
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML built without libyaml")
    from yaml._yaml import CParser

    assert issubclass(yamlio._StrictLoader, CParser)


def test_every_shipped_file_reads_as_the_pure_python_parser_reads_it():
    files = _shipped_files()
    assert len(files) > 100
    for path in files:
        text = path.read_text(encoding="utf-8")
        fast = yamlio.load_yaml(path)
        assert _with_lines(fast) == _with_lines(_parse(_PurePythonLoader, text, str(path))), path


@pytest.mark.parametrize("text, message", [
    ("a: 1\nb: [1, 2\n", ":3: invalid YAML"),
    ("a: 1\na: 2\n", ":2: duplicate key 'a' (first at line 1)"),
    ("a: &x [1]\nb: *x\n", ":2: YAML aliases (*x) are not allowed"),
    ("a: " + "[" * 70 + "]" * 70 + "\n", "nested deeper than 64 levels"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 64 levels"),
])
def test_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        yamlio.load_yaml(path)
    assert str(path) in str(info.value) and message in str(info.value)
