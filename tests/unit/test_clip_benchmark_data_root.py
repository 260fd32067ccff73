"""Where the clip_benchmark source finds a copy: `--data-root` pointing at the dataset folder itself, and
CLIP_benchmark's own folder names (`--dataset_root root/{dataset}`: pets, flowers, cars, imagenet-a, ...)."""

from pathlib import Path

import pytest
from PIL import Image

from evalsuite.catalog import Catalog
from evalsuite.data.clip_benchmark import ClipBenchmarkSource
from evalsuite.errors import DatasetUnavailableError
from evalsuite.prepare import prepare_task
from evalsuite.tasks import build_task
from helpers import write_fake_mnist

CATALOG = Catalog.load()
PET_LABELS = [0, 5, 36, 5]  # 0-based class indices


def write_fake_pets(root: Path) -> Path:
    """torchvision's Oxford-IIIT Pet layout: ``oxford-iiit-pet/images/<id>.jpg`` and
    ``annotations/test.txt`` lines ``<id> <class 1..37> <species> <breed id>``."""
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    lines = []
    for i, label in enumerate(PET_LABELS):
        image_id = f"breed{label}_{i}"
        Image.new("RGB", (12, 10), (label * 7, 0, 0)).save(base / "images" / f"{image_id}.jpg")
        lines.append(f"{image_id} {label + 1} 1 1\n")
    (base / "annotations" / "test.txt").write_text("".join(lines))
    return root


def listing(task_name: str, data_root: Path):
    task = build_task(CATALOG.tasks[task_name])
    samples = task.find_samples(task.source_context(data_root))
    return task, samples


def test_data_root_is_the_dataset_folder(tmp_path):
    write_fake_mnist(tmp_path / "mnist", [4, 2, 0])
    task, samples = listing("mnist", tmp_path / "mnist")
    assert task.source_used == "clip_benchmark" and samples.labels == [4, 2, 0]
    assert samples.root == str((tmp_path / "mnist").resolve())


def test_clip_benchmark_folder_name_under_data_root(tmp_path):
    """oxford_pets is CLIP_benchmark's `pets`: a copy it downloaded to root/pets is found."""
    write_fake_pets(tmp_path / "pets")
    task, samples = listing("oxford_pets", tmp_path)
    assert task.source_used == "clip_benchmark" and samples.labels == PET_LABELS
    assert samples.load(samples.items[2]).size == (12, 10)


def test_clip_benchmark_folder_itself_as_data_root(tmp_path):
    write_fake_pets(tmp_path / "pets")
    assert listing("oxford_pets", tmp_path / "pets")[1].labels == PET_LABELS


@pytest.mark.parametrize("task_name, folder", [("flowers102", "flowers"), ("stanford_cars", "cars"),
                                               ("oxford_pets", "pets"), ("imagenet_a", "imagenet-a"),
                                               ("imagenet_r", "imagenet-r"), ("mnist", "mnist")])
def test_catalogue_tasks_answer_to_clip_benchmark_names(task_name, folder, tmp_path):
    source = next(s for s in build_task(CATALOG.tasks[task_name]).sources if isinstance(s, ClipBenchmarkSource))
    assert folder in source.folder_names()
    (tmp_path / folder).mkdir()
    assert source.root(tmp_path) == (tmp_path / folder).resolve()
    assert source.root(tmp_path / folder) == (tmp_path / folder).resolve()


def test_another_folder_name_is_not_guessed(tmp_path):
    """A folder named otherwise is not taken for the dataset (CLIP_benchmark's readers would accept any folder for
    some datasets); the error says where it looked."""
    write_fake_mnist(tmp_path / "my-copy", [1])
    with pytest.raises(DatasetUnavailableError, match=r"my-copy/mnist"):
        listing("mnist", tmp_path / "my-copy")


def test_prepare_on_the_dataset_folder_downloads_nothing(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "mnist", [1, 2])
    monkeypatch.setattr(ClipBenchmarkSource, "download_into", lambda *a: pytest.fail("must not download"))
    outcome = prepare_task(CATALOG.tasks["mnist"], tmp_path / "mnist")
    assert outcome.num_samples == 2 and "expects 10000" in outcome.message
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == ["MNIST"]
