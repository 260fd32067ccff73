from pathlib import Path

import pytest

from evalsuite.catalog import Catalog
from evalsuite.errors import ConfigError, UnknownNameError

TASK = """\
name: {name}
type: classification
version: 1
source: {{kind: synthetic_shapes, args: {{per_class: 1}}}}
classnames: demo_shapes
templates: demo_shapes
num_classes: 30
metrics: [acc1]
primary_metric: acc1
tags: [{tags}]
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "tasks" / "suites").mkdir(parents=True)
    for name, tags in [("alpha_one", "greek"), ("alpha_two", "greek"), ("beta", "latin")]:
        (tmp_path / "tasks" / f"{name}.yaml").write_text(TASK.format(name=name, tags=tags))
    (tmp_path / "tasks" / "suites" / "greeks.yaml").write_text("name: greeks\nmembers: ['tag:greek']\n"
                                                               "expected_size: 2\n")
    return tmp_path


def test_selectors(root):
    cat = Catalog.load([root])
    names = lambda sel: [s.name for s in cat.select(sel)]  # noqa: E731
    assert names(["beta"]) == ["beta"]
    assert names(["tag:greek"]) == ["alpha_one", "alpha_two"]
    assert names(["alpha_*"]) == ["alpha_one", "alpha_two"]
    assert names(["greeks", "beta", "alpha_one"]) == ["alpha_one", "alpha_two", "beta"]  # deduplicated, in order
    assert "demo_shapes" in names(["demo"])  # built-in suites stay available beside include paths


def test_unknown_selector_suggests(root):
    cat = Catalog.load([root])
    with pytest.raises(UnknownNameError, match="Did you mean: beta"):
        cat.select(["betta"])
    with pytest.raises(UnknownNameError, match="no task has tag 'nope'"):
        cat.select(["tag:nope"])


def test_suite_size_mismatch_is_an_error(root):
    (root / "tasks" / "suites" / "greeks.yaml").write_text("name: greeks\nmembers: ['tag:greek']\nexpected_size: 3\n")
    cat = Catalog.load([root])
    with pytest.raises(ConfigError, match="expects 3 tasks but its members resolve to 2"):
        cat.select(["greeks"])


def test_duplicate_task_names_raise(root):
    (root / "tasks" / "sub").mkdir()
    (root / "tasks" / "sub" / "beta.yaml").write_text(TASK.format(name="beta", tags="x"))
    with pytest.raises(ConfigError, match="'beta' is defined twice"):
        Catalog.load([root])


def test_an_include_path_given_twice_or_the_checkout_itself_counts_once(root):
    """Both were 'task ... is defined twice; rename one of them': the same file, and the wrong fix."""
    from evalsuite.resources import builtin_root

    catalog = Catalog.load([root, Path(str(root) + "/"), root / "tasks" / ".."])
    assert "beta" in catalog.tasks
    assert set(Catalog.load([builtin_root()]).tasks) == set(Catalog.load().tasks)


@pytest.mark.parametrize("value", [0, -5])
def test_an_impossible_expected_count_is_a_config_error(root, value):
    (root / "tasks" / "beta.yaml").write_text(TASK.format(name="beta", tags="x") + f"expected_num_samples: {value}\n")
    with pytest.raises(ConfigError, match=r"beta.yaml:\d+: expected_num_samples must be a positive whole number"):
        Catalog.load([root])
