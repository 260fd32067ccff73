"""Task-type arguments (config.type_arguments, a type's ``Args`` dataclass) and per-type default metrics
(config.with_type_defaults): a new task type declares its YAML arguments and defaults in its own module, config.py
knows no type. The built-in types' arguments stay top-level TaskSpec fields, so every existing task file loads as
before and its fingerprint is unchanged: the digests below were computed by the code before the per-type layer."""

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from evalsuite.catalog import Catalog
from evalsuite.config import load_task_spec
from evalsuite.errors import ConfigError
from evalsuite.tasks import TASK_TYPES, build_task
from evalsuite.tasks.classification import ClassificationTask

# sha256 of json.dumps(task.fingerprint_payload(), sort_keys=True), first 16 hex digits, before this change
PAYLOAD_DIGESTS = {
    "cifar10": "a7d13601221af3ea", "imagenet1k": "aadf749e6034d89a", "fgvc_aircraft": "943cc798b96f63d9",
    "flickr30k": "847404c67f4e25b8", "mscoco": "8ecc1075af41e94d", "demo_shapes": "8a068a2bcfd2499a",
    "demo_retrieval": "7660a477c008a2fd",
}
# video payloads hold the PyAV version: their spec part only
SPEC_DIGESTS = {"demo_clips": "35440a539826af57", "kinetics400": "d20834c1e037af65", "ucf101": "2288439643ed89a6",
                "cifar10": "046ddcc61b8016bc", "mscoco": "af673ad0dc2e4b05"}
AS_DICT_KEYS = ["name", "type", "version", "source", "metrics", "primary_metric", "classnames", "templates",
                "num_classes", "tags", "expected_num_samples", "expected_num_texts", "description", "notes"]


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def catalog():
    return Catalog.load()


def test_fingerprints_of_built_in_tasks_are_unchanged(catalog):
    for name, expected in PAYLOAD_DIGESTS.items():
        assert digest(build_task(catalog.tasks[name]).fingerprint_payload()) == expected, name
    for name, expected in SPEC_DIGESTS.items():
        assert digest(build_task(catalog.tasks[name]).fingerprint_payload()["spec"]) == expected, name
    for spec in catalog.tasks.values():  # no built-in file uses args:, so as_dict keeps its keys and order
        assert list(spec.as_dict()) == AS_DICT_KEYS, spec.name


def write(tmp_path: Path, body: str, name: str = "t") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nversion: 1\n" + body)
    return path


SHAPES = ("type: classification\nsource: {kind: synthetic_shapes, args: {per_class: 2, seed: 0, split: all}}\n"
          "classnames: demo_shapes\ntemplates: demo_shapes\nnum_classes: 30\n")
CAPTIONS = ("type: zeroshot_retrieval\nsource: {kind: synthetic_captions, args: {per_pair: 1, seed: 5,"
            " captions: ['a {c}.']}}\n")


def test_metrics_default_to_the_task_types(tmp_path):
    spec = load_task_spec(write(tmp_path, SHAPES))
    assert spec.metrics == ["acc1", "acc5", "mean_per_class_recall"] and spec.primary_metric == "acc1"
    stated = load_task_spec(write(tmp_path, SHAPES + "metrics: [acc1, acc5, mean_per_class_recall]\n"
                                  "primary_metric: acc1\n", name="u"))
    assert dataclasses.replace(stated, name="t", file=spec.file) == spec  # the same spec, so the same fingerprint
    spec = load_task_spec(write(tmp_path, SHAPES + "metrics: [acc1, mean_per_class_recall]\n"))
    assert spec.primary_metric == "acc1"
    spec = load_task_spec(write(tmp_path, CAPTIONS))
    assert spec.primary_metric == "mean_recall" and spec.metrics[-1] == "mean_recall" and len(spec.metrics) == 7
    assert build_task(spec).ks == [1, 5, 10]
    video = SHAPES.replace("classification", "video_middle_frame")
    assert load_task_spec(write(tmp_path, video)).metrics == ["acc1", "acc5", "mean_acc1_acc5"]


def test_primary_default_must_be_among_the_metrics(tmp_path):
    with pytest.raises(ConfigError, match=r"t.yaml: missing key 'primary_metric' \(task type 'classification': its"
                                          r" default 'acc1' is not among metrics \['acc5'\]\)"):
        load_task_spec(write(tmp_path, SHAPES + "metrics: [acc5]\n"))
    with pytest.raises(ConfigError, match=r"t.yaml:\d+: unknown task type 'clasification'.*Did you mean"):
        load_task_spec(write(tmp_path, SHAPES.replace("classification", "clasification")))


@pytest.mark.parametrize("body,message", [
    (CAPTIONS + "classnames: demo_shapes\n",
     "key 'classnames' is not an argument of task type 'zeroshot_retrieval' (its arguments: expected_num_texts)"),
    (SHAPES + "expected_num_texts: 5\n", "key 'expected_num_texts' is not an argument of task type"
                                         " 'classification' (its arguments: classnames, templates, num_classes)"),
    (SHAPES.replace("num_classes: 30\n", ""), "task type 'classification' needs 'num_classes'"),
    (SHAPES + "args: {num_classes: 30}\n", "args: 'num_classes' is a task-file key; give it at the top level"),
    (SHAPES + "args: {epochs: 3}\n", "unknown key 'epochs' in ClassificationArgs"),
])
def test_type_arguments_are_checked_against_the_types_args(tmp_path, body, message):
    with pytest.raises(ConfigError) as exc:
        build_task(load_task_spec(write(tmp_path, body)))
    assert message in str(exc.value)


@dataclass(frozen=True)
class ProbeArgs:
    classnames: str
    templates: str
    num_classes: int
    epochs: int = 3
    learning_rate: float = 0.1


class ProbeTask(ClassificationTask):
    """A task type defined outside evalsuite (as a plugin would): its own arguments and default metrics."""

    Args = ProbeArgs
    default_metrics = ("acc1", "mean_per_class_recall")
    default_primary_metric = "mean_per_class_recall"


@pytest.fixture
def probe_type():
    TASK_TYPES.register("test_probe")(ProbeTask)
    yield "test_probe"
    del TASK_TYPES._loaded["test_probe"]


def test_a_new_task_type_declares_its_args_and_defaults(tmp_path, probe_type):
    body = SHAPES.replace("classification", probe_type)
    task = build_task(load_task_spec(write(tmp_path, body + "args: {epochs: 5}\n")))
    assert task.args == ProbeArgs("demo_shapes", "demo_shapes", 30, epochs=5)
    assert (task.spec.metrics == ["acc1", "mean_per_class_recall"]
            and task.spec.primary_metric == "mean_per_class_recall")
    assert task.fingerprint_payload()["spec"]["args"] == {"epochs": 5}  # the type's arguments are in the fingerprint
    plain = build_task(load_task_spec(write(tmp_path, body, name="u")))
    assert plain.args.epochs == 3 and "args" not in plain.fingerprint_payload()["spec"]
    with pytest.raises(ConfigError, match="unknown key 'epoch' in ProbeArgs. Did you mean: epochs"):
        build_task(load_task_spec(write(tmp_path, body + "args: {epoch: 5}\n", name="v")))
    with pytest.raises(ConfigError, match="key 'learning_rate': expected float, got str"):
        build_task(load_task_spec(write(tmp_path, body + "args: {learning_rate: fast}\n", name="w")))
