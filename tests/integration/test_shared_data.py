"""Real data slices from ../shared/data (skipped when absent): counts, label order, results schema."""

import csv
from collections import Counter
from pathlib import Path

import pytest

from evalsuite.catalog import Catalog
from evalsuite.cli import main
from evalsuite.results import TASK_COLUMNS
from evalsuite.tasks import build_task
from helpers import CIFAR10_CLASSES, FEWER_THAN_EXPECTED, shared


def listing(task_name: str, data_root: Path):
    task = build_task(Catalog.load().tasks[task_name])
    return task, task.find_samples(task.source_context(data_root))


def test_cifar10_label_order_and_counts():
    root = shared("cifar10-test")
    _, samples = listing("cifar10", root)
    assert len(samples.items) == 10_000
    assert Counter(samples.labels) == {i: 1000 for i in range(10)}
    for path, label in zip(samples.items, samples.labels):
        assert Path(path).parent.name == CIFAR10_CLASSES[label]


@pytest.mark.parametrize("data_root_of", [lambda d: d / "cifar10-test", lambda d: d])
def test_cifar10_found_by_dataset_folder_or_its_parent(data_root_of):
    root = shared("cifar10-test").parent
    _, samples = listing("cifar10", data_root_of(root))
    assert len(samples.items) == 10_000


def test_imagenet_sample_label_order():
    root = shared("imagenet-sample")
    task, samples = listing("imagenet1k", root)
    assert len(samples.items) == 1000 and sorted(samples.labels) == list(range(1000))
    by_file = {Path(p).name: label for p, label in zip(samples.items, samples.labels)}
    assert by_file["n01440764_tench.JPEG"] == 0 and by_file["n15075141_toilet_tissue.JPEG"] == 999
    assert task.bank.classnames[0] == "tench" and task.bank.classnames[999] == "toilet paper"
    assert len(task.bank.templates) == 80


@pytest.mark.slow
def test_cli_cifar10_all_10000_real_images(tiny_model_dir, tmp_path):
    args = ["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10",
            "--data-root", str(shared("cifar10-test")), "--output-dir", str(tmp_path)]
    assert main(args) == 0
    path = next(tmp_path.iterdir()) / "cifar10.csv"
    with path.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == TASK_COLUMNS
    assert {r["num_samples"] for r in rows} == {"10000"} and {r["num_failed"] for r in rows} == {"0"}
    assert {r["partial"] for r in rows} == {"false"}
    mtime = path.stat().st_mtime_ns
    assert main(args) == 0  # re-running skips the task (all 10,000: count ok, nothing flagged)
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_cli_imagenet_sample_1000_images(tiny_model_dir, tmp_path, capsys):
    args = ["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "imagenet1k",
            "--data-root", str(shared("imagenet-sample")), "--output-dir", str(tmp_path)]
    assert main(args) == FEWER_THAN_EXPECTED
    with (next(tmp_path.iterdir()) / "imagenet1k.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["num_samples"] for r in rows} == {"1000"} and {r["partial"] for r in rows} == {"false"}
    assert {r["count_status"] for r in rows} == {"fewer"} and {r["expected_num_samples"] for r in rows} == {"50000"}
    err = capsys.readouterr().err
    assert "count_status=fewer" in err and "scored 1000 samples" in err and "the task expects 50000" in err
    # the flag stands: a re-run that skips the task exits 3 again and says why
    assert main(args) == FEWER_THAN_EXPECTED
    assert "skipped" in capsys.readouterr().err
