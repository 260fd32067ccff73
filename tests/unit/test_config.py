from pathlib import Path

import pytest

from evalsuite.config import load_suite_spec, load_task_spec
from evalsuite.errors import ConfigError

GOOD = """\
name: {name}
type: classification
version: 1
source:
  kind: image_folder
  args: {{dirs: [x]}}
classnames: cifar10
templates: cifar10
num_classes: 10
metrics: [acc1, acc5]
primary_metric: acc1
"""


def write(tmp_path: Path, text: str, name: str = "mytask") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_good_task_loads(tmp_path):
    spec = load_task_spec(write(tmp_path, GOOD.format(name="mytask")))
    assert spec.name == "mytask" and spec.source.kind == "image_folder" and spec.source.args == {"dirs": ["x"]}
    assert spec.metrics == ["acc1", "acc5"] and spec.tags == []


def test_unknown_key_names_file_line_and_suggestion(tmp_path):
    path = write(tmp_path, GOOD.format(name="mytask") + "primary_metrc: acc1\n")
    with pytest.raises(ConfigError) as exc:
        load_task_spec(path)
    msg = str(exc.value)
    assert f"{path}:12" in msg and "primary_metrc" in msg and "Did you mean: primary_metric" in msg


def test_duplicate_key_is_an_error(tmp_path):
    path = write(tmp_path, GOOD.format(name="mytask") + "version: 2\n")
    with pytest.raises(ConfigError, match=r"mytask.yaml:12: duplicate key 'version' \(first at line 3\)"):
        load_task_spec(path)


@pytest.mark.parametrize("line,expected", [
    ("version: one", "key 'version': expected int, got str"),
    ("version: true", "key 'version': expected int, got bool"),
    ("metrics: acc1", "key 'metrics': expected list of str"),
])
def test_wrong_types(tmp_path, line, expected):
    key = line.split(":")[0]
    text = "\n".join(ln for ln in GOOD.format(name="mytask").splitlines() if not ln.startswith(key + ":"))
    with pytest.raises(ConfigError, match=expected):
        load_task_spec(write(tmp_path, text + "\n" + line + "\n"))


def test_missing_required_key(tmp_path):
    text = GOOD.format(name="mytask").replace("type: classification\n", "")
    with pytest.raises(ConfigError, match="missing required key 'type'"):
        load_task_spec(write(tmp_path, text))


def test_name_must_equal_file_stem(tmp_path):
    path = write(tmp_path, GOOD.format(name="other"), name="mytask")
    with pytest.raises(ConfigError, match=r"mytask.yaml:1: task name 'other' must equal the file name stem"):
        load_task_spec(path)


def test_primary_metric_must_be_listed(tmp_path):
    text = GOOD.format(name="mytask").replace("primary_metric: acc1", "primary_metric: mean_per_class_recall")
    with pytest.raises(ConfigError, match="is not among metrics"):
        load_task_spec(write(tmp_path, text))


def test_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "name: mytask\nmetrics: [acc1\n")
    with pytest.raises(ConfigError, match=r"mytask.yaml:\d+: invalid YAML"):
        load_task_spec(path)


def test_nested_unknown_key_in_source(tmp_path):
    text = GOOD.format(name="mytask").replace("  kind: image_folder", "  kind: image_folder\n  kindd: x")
    with pytest.raises(ConfigError, match="unknown key 'kindd' in SourceSpec"):
        load_task_spec(write(tmp_path, text))


def test_suite_spec(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmembers: [a, 'tag:x']\nexpected_size: 3\n")
    suite = load_suite_spec(path)
    assert suite.members == ["a", "tag:x"] and suite.expected_size == 3
    path.write_text("name: s\nmembers: [a]\naggregation: median\n")
    with pytest.raises(ConfigError, match="unknown aggregation 'median'"):
        load_suite_spec(path)
