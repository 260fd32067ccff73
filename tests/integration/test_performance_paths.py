"""Performance paths must not change numbers: batch sizes, OOM back-off, the feature cache (a re-run with new
templates decodes no image), class-embedding reuse."""

import csv

import pytest
import torch

from evalsuite.cli import main
from evalsuite.encoding.images import BatchLimit, encode_with_backoff
from helpers import FEWER_THAN_EXPECTED, write_class_folders, write_include_task


def metrics_of(out_dir, task="cifar10"):
    rows = csv.DictReader((next(out_dir.iterdir()) / f"{task}.csv").open())
    return {r["metric"]: r["value"] for r in rows}


def test_batch_sizes_give_identical_metrics(tiny_model_dir, cifar_like_root, tmp_path):
    results = []
    for batch in (1, 7, 64):
        out = tmp_path / f"b{batch}"
        assert main(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10", "--data-root",
                     str(cifar_like_root), "--output-dir", str(out), "--workers", "0", "--batch-size", str(batch),
                     "--no-cache-features"]) == FEWER_THAN_EXPECTED
        results.append(metrics_of(out))
    assert results[0] == results[1] == results[2]


class FlakyGPUModel:
    """Encodes like a real adapter but 'runs out of memory' above 3 images per call."""

    def __init__(self):
        self.calls = []

    def encode_image(self, pixels):
        self.calls.append(len(pixels))
        if len(pixels) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return pixels.flatten(1)[:, :4] * 2


def test_oom_back_off_halves_until_it_fits_and_keeps_results():
    model, pixels = FlakyGPUModel(), torch.arange(10 * 8, dtype=torch.float32).view(10, 2, 2, 2)
    limit = BatchLimit()
    features = encode_with_backoff(model.encode_image, pixels, limit)
    assert torch.equal(features, pixels.flatten(1)[:, :4] * 2)
    assert limit.size == 2 and limit.logged  # 10 -> 5 -> 2
    assert encode_with_backoff(model.encode_image, pixels, limit).shape == (10, 4) and max(model.calls[-5:]) == 2


def test_other_runtime_errors_are_not_swallowed():
    class Broken(FlakyGPUModel):
        def encode_image(self, pixels):
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        encode_with_backoff(Broken().encode_image, torch.zeros(4, 3), BatchLimit())


def test_changed_templates_rescore_from_cached_features_without_decoding(tiny_model_dir, tmp_path, monkeypatch):
    from evalsuite.data.pixels import UInt8Pixels

    write_class_folders(tmp_path / "data" / "pets", ["cat", "dog"], per_class=5)
    inc = tmp_path / "inc"
    templates = write_include_task(inc, "pets", ["cat", "dog"])
    decoded = []
    real = UInt8Pixels.from_file  # every file-based sample is read through it
    monkeypatch.setattr(UInt8Pixels, "from_file", lambda self, p: decoded.append(p) or real(self, p))
    argv = ["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "pets", "--data-root", str(tmp_path / "data"),
            "--include-path", str(inc), "--output-dir", str(tmp_path / "out"), "--workers", "0"]
    templates.write_text("source: test\ntemplates: ['a photo of a {c}.']\n")
    assert main(argv) == 0 and len(decoded) == 10
    decoded.clear()
    templates.write_text("source: test\ntemplates: ['a blurry photo of a {c}.', 'the {c}.']\n")
    assert main(argv) == 0  # new prompts: a new task fingerprint, so it runs ...
    assert decoded == []  # ... on the cached image features
    manifest = (next((tmp_path / "out").iterdir()) / "run.json").read_text()
    assert '"image_batch_limit": 256' in manifest


def test_each_task_finds_its_loader_already_running(tiny_model_dir, tmp_path, monkeypatch):
    """The runner starts the next image set's workers before its task begins; numbers are unchanged."""
    from evalsuite.encoding.loaders import LoaderPool

    write_class_folders(tmp_path / "data" / "cifar10", ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                        "horse", "ship", "truck"], per_class=3)
    pools = []
    real_init = LoaderPool.__init__
    monkeypatch.setattr(LoaderPool, "__init__", lambda self, *a: pools.append(self) or real_init(self, *a))
    argv = ["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10", "--data-root",
            str(tmp_path / "data"), "--workers", "1", "--batch-size", "8", "--no-cache-features"]
    assert main(argv + ["--output-dir", str(tmp_path / "best"), "--transform", "best-of-both"]) == FEWER_THAN_EXPECTED
    assert (pools[-1].taken_running, pools[-1].taken_cold) == (2, 0)  # shortest, then squash: both started ahead
    assert main(argv + ["--output-dir", str(tmp_path / "plain"), "--transform", "shortest"]) == FEWER_THAN_EXPECTED
    monkeypatch.setattr(LoaderPool, "start", lambda self, key, dataset: None)  # nothing started ahead
    assert main(argv + ["--output-dir", str(tmp_path / "cold"), "--transform", "shortest"]) == FEWER_THAN_EXPECTED
    assert pools[-1].taken_cold == 1
    assert metrics_of(tmp_path / "plain") == metrics_of(tmp_path / "cold")


def test_on_a_cpu_device_workers_decode_only_between_forward_passes(tiny_model_dir, tmp_path, monkeypatch):
    """Decoding during a forward pass that already uses every core slows it by more than the decoding saves
    (data.loader.TurnGate): no sample may start being read while an image or text forward pass runs."""
    import time

    from evalsuite.data.pixels import UInt8Pixels
    from evalsuite.models.base import ModelAdapter

    write_class_folders(tmp_path / "data" / "cifar10", ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                        "horse", "ship", "truck"], per_class=3)
    reads = tmp_path / "reads.txt"  # appended to by the worker processes
    real_read, real_image, real_text = UInt8Pixels.from_file, ModelAdapter.encode_image, ModelAdapter.encode_text
    forwards = []

    def read(self, path):
        with reads.open("a") as f:
            f.write(f"{time.monotonic()}\n")
        time.sleep(0.05)  # decoding that lasts: free-running workers would still be at it during the forwards
        return real_read(self, path)

    def slow(real):
        def forward(self, x):
            start = time.monotonic()
            time.sleep(0.2)
            out = real(self, x)
            forwards.append((start, time.monotonic()))
            return out
        return forward

    monkeypatch.setattr(UInt8Pixels, "from_file", read)
    monkeypatch.setattr(ModelAdapter, "encode_image", slow(real_image))
    monkeypatch.setattr(ModelAdapter, "encode_text", slow(real_text))
    assert main(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10", "--data-root",
                 str(tmp_path / "data"), "--workers", "2", "--batch-size", "8", "--no-cache-features",
                 "--output-dir", str(tmp_path / "out")]) == FEWER_THAN_EXPECTED
    starts = [float(line) for line in reads.read_text().split()]
    assert len(starts) == 30 and len(forwards) >= 5
    # a worker past the gate just before it closed may record its read a moment later
    during = [t for t in starts for begin, end in forwards if begin + 0.05 < t < end]
    assert during == []
