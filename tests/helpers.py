"""Helpers shared by tests (importable as ``helpers``; see pythonpath in pyproject.toml)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("EVALSUITE_SHARED_DATA", REPO.parent / "shared" / "data"))
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def shared(sub: str) -> Path:
    """A folder of ../shared/data, or skip the test when it is absent (fresh machine)."""
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/data is optional)")
    return path


def write_class_folders(root: Path, classes: list[str], per_class: int, seed: int = 0, size=(40, 30)) -> Path:
    """Random-noise PNG images in ``root/<class>/`` (enough for a random model's deterministic predictions)."""
    from PIL import Image

    rng = random.Random(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3))
            Image.frombytes("RGB", size, pixels).save(root / c / f"{i:04d}.png")
    return root


def write_include_task(inc: Path, name: str, classnames: list[str], templates: tuple[str, ...] = ("a photo of a {c}.",),
                       metrics: tuple[str, ...] = ("acc1",), extra: str = "") -> Path:
    """A classification task defined outside the package: ``inc/tasks/<name>.yaml`` reading an image folder and
    its class-name and template files under ``inc/prompts``. Returns the templates file (tests rewrite it)."""
    import json

    for sub in ("tasks", "prompts/classnames", "prompts/templates"):
        (inc / sub).mkdir(parents=True, exist_ok=True)
    (inc / "tasks" / f"{name}.yaml").write_text(
        f"name: {name}\ntype: classification\nversion: 1\nsource: {{kind: image_folder, args: {{}}}}\n"
        f"classnames: {name}\ntemplates: {name}\nnum_classes: {len(classnames)}\nmetrics: [{', '.join(metrics)}]\n"
        f"primary_metric: {metrics[0]}\n{extra}")
    (inc / "prompts/classnames" / f"{name}.yaml").write_text(f"source: test\nclassnames: {json.dumps(classnames)}\n")
    template_file = inc / "prompts/templates" / f"{name}.yaml"
    template_file.write_text(f"source: test\ntemplates: {json.dumps(list(templates))}\n")
    return template_file


def write_fake_mnist(root: Path, labels: list[int], seed: int = 0) -> Path:
    """torchvision's MNIST raw layout (``<root>/MNIST/raw/*-ubyte``, IDX format) holding random 28x28 digits with
    the given test labels; the train files hold one image (torchvision checks that they exist)."""
    import struct

    import numpy as np

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def write(prefix: str, labels_: list[int]) -> None:
        n = len(labels_)
        pixels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + pixels.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + bytes(labels_))

    write("t10k", labels)
    write("train", [0])
    return root

# Exit code of a run of a catalogue task on a stand-in smaller than its expected_num_samples (count_status=fewer:
# the run is flagged, its results written).
FEWER_THAN_EXPECTED = 3


def encoder_for(model, batch_size: int = 256, workers: int = 0):
    """An Encoder around a loaded model (no caches), for tests that evaluate one task directly."""
    from evalsuite.encoding.encoder import Encoder, EncoderSettings

    return Encoder.for_model(model, EncoderSettings(batch_size=batch_size, workers=workers))
