"""The 27 EVA-CLIP classification tasks: membership, paper order, class counts, and prompts that match their
cited sources (CLIP_benchmark's JSON files and timm's ImageNet-A/R index lists, both installed)."""

import json
from pathlib import Path

import pytest

from evalsuite.catalog import Catalog
from evalsuite.cli import main
from evalsuite.tasks import build_task

CATALOG = Catalog.load()

PAPER_ORDER = ["imagenet1k", "imagenetv2", "imagenet_a", "imagenet_r", "imagenet_sketch", "objectnet", "cifar10",
               "cifar100", "mnist", "caltech101", "sun397", "fgvc_aircraft", "country211", "stanford_cars", "birdsnap",
               "dtd", "eurosat", "fer2013", "flowers102", "food101", "gtsrb", "pcam", "oxford_pets", "renderedsst2",
               "resisc45", "stl10", "voc2007"]
CLASS_COUNTS = [1000, 1000, 200, 200, 1000, 113, 10, 100, 10, 102, 397, 100, 211, 196, 500, 47, 10, 7, 102, 101, 43,
                2, 37, 2, 45, 10, 20]

# task -> the key of its class names / templates in CLIP_benchmark's JSON files (None: not taken from there)
CB_CLASSNAMES = {"mnist": "mnist", "caltech101": "caltech101", "country211": "country211", "eurosat": "eurosat",
                 "fer2013": "fer2013", "flowers102": "flowers", "gtsrb": "gtsrb", "pcam": "pcam",
                 "oxford_pets": "pets", "imagenet1k": "imagenet1k", "imagenetv2": "imagenet1k",
                 "imagenet_sketch": "imagenet1k"}
CB_TEMPLATES = {"cifar10": "cifar10", "cifar100": "cifar100", "mnist": "mnist", "caltech101": "caltech101",
                "sun397": "sun397", "fgvc_aircraft": "fgvc_aircraft", "country211": "country211",
                "stanford_cars": "cars", "dtd": "dtd", "eurosat": "eurosat", "fer2013": "fer2013",
                "flowers102": "flowers", "food101": "food101", "gtsrb": "gtsrb", "pcam": "pcam",
                "oxford_pets": "pets", "renderedsst2": "renderedsst2", "resisc45": "resisc45", "stl10": "stl10",
                "voc2007": "voc2007", **{t: "imagenet1k" for t in PAPER_ORDER[:6]}}


def clip_benchmark_json(name: str) -> dict:
    import clip_benchmark.datasets

    return json.loads((Path(clip_benchmark.datasets.__file__).parent / name).read_text())


def test_eva_cls27_is_exactly_the_27_in_paper_order():
    assert CATALOG.suite_members("eva_cls27") == PAPER_ORDER
    assert sorted(s.name for s in CATALOG.select(["tag:eva_cls27"])) == sorted(PAPER_ORDER)
    assert CATALOG.suite_members("imagenet_variants") == PAPER_ORDER[:6]
    assert set(PAPER_ORDER) <= set(CATALOG.suite_members("all"))


def test_cli_lists_the_27_and_validates_all(capsys):
    assert main(["ls", "tasks", "--tag", "eva_cls27"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted(listed) == sorted(PAPER_ORDER)
    assert main(["validate", "--tasks", "all"]) == 0


@pytest.mark.parametrize("name,count", list(zip(PAPER_ORDER, CLASS_COUNTS)))
def test_class_counts_and_metrics(name, count):
    task = build_task(CATALOG.tasks[name])
    assert task.spec.num_classes == count == len(task.bank.classnames)
    assert task.spec.primary_metric == "acc1"
    assert ("acc5" in task.spec.metrics) == (count >= 5)
    assert "mean_per_class_recall" in task.spec.metrics


@pytest.mark.parametrize("name", sorted(CB_CLASSNAMES))
def test_classnames_equal_clip_benchmark(name):
    bank = build_task(CATALOG.tasks[name]).bank
    assert bank.classnames == clip_benchmark_json("en_classnames.json")[CB_CLASSNAMES[name]]


@pytest.mark.parametrize("name", sorted(CB_TEMPLATES))
def test_templates_equal_clip_benchmark(name):
    bank = build_task(CATALOG.tasks[name]).bank
    assert bank.templates == clip_benchmark_json("en_zeroshot_classification_templates.json")[CB_TEMPLATES[name]]


@pytest.mark.parametrize("name,timm_file", [("imagenet_a", "imagenet_a"), ("imagenet_r", "imagenet_r")])
def test_imagenet_subsets_follow_timm_indices(name, timm_file):
    import timm.data

    info = Path(timm.data.__file__).parent / "_info"
    indices = [int(x) for x in (info / f"{timm_file}_indices.txt").read_text().split()]
    full = build_task(CATALOG.tasks["imagenet1k"]).bank
    subset = build_task(CATALOG.tasks[name]).bank
    assert subset.classnames == [full.classnames[i] for i in indices]
    assert subset.keys == [full.keys[i] for i in indices] == (info / f"{timm_file}_synsets.txt").read_text().split()


def test_imagenet_duplicate_names_are_kept():
    names = build_task(CATALOG.tasks["imagenet1k"]).bank.classnames
    assert names.count("missile") == 2 and names.count("sunglasses") == 2


def test_cifar100_names_are_torchvision_raw_names():
    names = build_task(CATALOG.tasks["cifar100"]).bank.classnames
    assert names[:3] == ["apple", "aquarium_fish", "baby"] and names == sorted(names)


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_notes_explain_each_task(name):
    assert len(CATALOG.tasks[name].notes) > 40
