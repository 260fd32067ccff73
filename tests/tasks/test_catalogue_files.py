"""Every task YAML, prompt file, suite and model card in the repo loads and resolves."""

import pytest

from evalsuite.catalog import Catalog
from evalsuite.models.card import all_cards
from evalsuite.resources import builtin_root
from evalsuite.tasks import build_task
from evalsuite.yamlio import load_yaml

CATALOG = Catalog.load()


@pytest.mark.parametrize("name", sorted(CATALOG.tasks))
def test_task_builds(name):
    task = build_task(CATALOG.tasks[name])
    assert task.spec.expected_num_samples, "state expected_num_samples (and why it differs from the paper in notes)"
    if hasattr(task, "bank"):
        assert len(task.bank.classnames) == task.spec.num_classes


@pytest.mark.parametrize("name", sorted(CATALOG.suites))
def test_suite_resolves(name):
    assert CATALOG.suite_members(name)


@pytest.mark.parametrize("path", sorted((builtin_root() / "prompts").rglob("*.yaml")), ids=lambda p: p.name)
def test_prompt_files_cite_a_source(path):
    assert str(load_yaml(path).get("source", "")).strip()


def test_model_cards_load():
    cards = all_cards()
    assert "demo-clip" in cards
