from pathlib import Path

import pytest

from evalsuite.config import load_task_spec
from evalsuite.errors import PromptError
from evalsuite.prompts import check_template, load_prompt_bank

TASK = """\
name: t
type: classification
version: 1
source: {{kind: image_folder}}
classnames: {names}
templates: {templ}
num_classes: {n}
metrics: [acc1]
primary_metric: acc1
"""


def setup(tmp_path: Path, names_yaml: str, templ_yaml: str, n: int = 2):
    (tmp_path / "prompts" / "classnames").mkdir(parents=True)
    (tmp_path / "prompts" / "templates").mkdir(parents=True)
    (tmp_path / "prompts" / "classnames" / "mine.yaml").write_text(names_yaml)
    (tmp_path / "prompts" / "templates" / "mine.yaml").write_text(templ_yaml)
    (tmp_path / "tasks").mkdir()
    path = tmp_path / "tasks" / "t.yaml"
    path.write_text(TASK.format(names="mine", templ="mine", n=n))
    return load_task_spec(path)


def test_bank_loads_and_fills_templates(tmp_path):
    spec = setup(tmp_path, "source: s\nclassnames: [cat, dog]\n", "source: s\ntemplates: ['a {c}.', 'the {c}!']\n")
    bank = load_prompt_bank(spec, [tmp_path])
    assert bank.prompts() == [["a cat.", "the cat!"], ["a dog.", "the dog!"]]
    assert bank.keys == ["cat", "dog"] and len(bank.digest) == 16


def test_class_count_must_match_task(tmp_path):
    spec = setup(tmp_path, "source: s\nclassnames: [cat, dog, cow]\n", "source: s\ntemplates: ['a {c}.']\n", n=2)
    with pytest.raises(PromptError, match="num_classes=2 but .* lists 3 class names"):
        load_prompt_bank(spec, [tmp_path])


@pytest.mark.parametrize("template", ["a photo.", "a {} photo", "a {c} and {c}", "a {c} {d}", "a {c"])
def test_bad_templates(template):
    with pytest.raises(PromptError):
        check_template(template, "f.yaml")


def test_missing_prompt_file_never_falls_back(tmp_path):
    spec = setup(tmp_path, "source: s\nclassnames: [cat, dog]\n", "source: s\ntemplates: ['a {c}.']\n")
    spec = spec.__class__(**{**spec.__dict__, "templates": "nonexistent"})
    with pytest.raises(PromptError, match="no templates file 'nonexistent'"):
        load_prompt_bank(spec, [tmp_path])


def test_source_line_is_required(tmp_path):
    spec = setup(tmp_path, "classnames: [cat, dog]\n", "source: s\ntemplates: ['a {c}.']\n")
    with pytest.raises(Exception, match="missing required key 'source'"):
        load_prompt_bank(spec, [tmp_path])


def test_keys_must_be_unique_and_aligned(tmp_path):
    spec = setup(tmp_path, "source: s\nclassnames: [cat, dog]\nkeys: [a]\n", "source: s\ntemplates: ['a {c}.']\n")
    with pytest.raises(PromptError, match="1 keys for 2 class names"):
        load_prompt_bank(spec, [tmp_path])
