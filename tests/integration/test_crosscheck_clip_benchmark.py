"""Cross-check: on the same model and images, evalsuite's metrics equal CLIP_benchmark's own
zero-shot classification functions (the tool the EVA-CLIP authors used) to 1e-6."""

import pytest
import torch
from clip_benchmark.metrics import zeroshot_classification as cb

from evalsuite.catalog import Catalog
from evalsuite.models.loading import load_model, resolve_card
from evalsuite.tasks import build_task
from evalsuite.tasks.base import RunContext
from helpers import CIFAR10_CLASSES, encoder_for, shared, write_class_folders


class _ForClipBenchmark(torch.utils.data.Dataset):
    """The very same samples and transform, in the (image, target) shape CLIP_benchmark expects."""

    def __init__(self, dataset, classes):
        self.dataset, self.classes = dataset, classes

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        pixels, label, _, error = self.dataset[i]
        assert error is None, error
        return pixels, label


def crosscheck(model_spec: str, task_name: str, data_root, limit=None):
    model = load_model(resolve_card(model_spec), device="cpu")
    task = build_task(Catalog.load().tasks[task_name])
    ctx = RunContext(data_root=data_root, limit=limit)
    ours = task.evaluate(encoder_for(model, batch_size=64), ctx).metrics

    dataset = task.inputs(ctx).images.dataset(model.image_transform())
    loader = torch.utils.data.DataLoader(_ForClipBenchmark(dataset, task.bank.classnames), batch_size=64)
    theirs = cb.evaluate(model.module, loader, model.tokenize, task.bank.classnames, task.bank.templates,
                         "cpu", amp=False)
    assert set(ours) <= set(theirs)
    for name, value in ours.items():
        assert value == pytest.approx(theirs[name], abs=1e-6), name
    return ours, theirs


def test_random_tiny_model_on_generated_images(tiny_model_dir, tmp_path):
    write_class_folders(tmp_path / "cifar10", CIFAR10_CLASSES, per_class=12, seed=3)
    crosscheck(f"local-dir:{tiny_model_dir}", "cifar10", tmp_path)


@pytest.mark.parametrize("task_name", ["demo_shapes", "demo_heldout"])
def test_demo_model_on_shapes(task_name, tmp_path):
    ours, _ = crosscheck("demo-clip", task_name, tmp_path)
    assert ours["acc1"] > 0.5  # a trained model: the comparison covers non-trivial predictions


def test_tiny_model_on_real_cifar10_sample(tiny_model_dir):
    crosscheck(f"local-dir:{tiny_model_dir}", "cifar10", shared("cifar10-test"), limit=500)
