"""evalsuite vs CLIP_benchmark on the same model and the same data, cold and warm, fp32 on CPU.

Model: a small random-init open_clip CLIP (ViT, patch 32, 224 px; real 77-token text tower) saved in open_clip's
``local-dir`` format, so both tools load the identical file. Data (from ../shared/data): CIFAR-10 test (10,000
images), the ImageNet sample (1,000 images, 1,000 classes x 80 templates) as ``imagenet1k``, and the same images
foldered by WordNet id as ``imagenet_sketch`` (a second ImageNet-family task with the same prompts).

CLIP_benchmark is run the way its CLI runs a list of datasets: per dataset it creates the model and transforms,
builds a DataLoader and calls ``zeroshot_classification.evaluate`` (classifier one class at a time, 77 tokens,
no caching) with ``amp=False``, one DataLoader worker (``--workers``; its CLI's default of 4 only adds contention
on a 2-core machine). Its CLI cannot read these folder layouts, so its library functions are called in the CLI's
order; numpy < 2.4 and requests are pinned by evalsuite's own dependencies for it. evalsuite runs
``evalsuite run --tasks cifar10,imagenet1k,imagenet_sketch`` with its default workers (on a CPU device every core,
decoding only between forward passes) once with an empty cache (cold) and again with the feature cache filled
(warm); ``--evalsuite-workers N`` overrides that. The metrics of both (acc1, acc5, mean per-class recall) must
agree.

    python benchmarks/vs_clip_benchmark.py [--workers 1] [--evalsuite-workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EVALSUITE_SHARED_DATA", REPO.parent / "shared" / "data"))

METRICS = ("acc1", "acc5", "mean_per_class_recall")  # what both tools report for these tasks
SMALL_CFG = {
    "embed_dim": 256,
    "vision_cfg": {"image_size": 224, "layers": 4, "width": 256, "head_width": 64, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 192, "heads": 4, "layers": 4},
}


def write_model(folder: Path, seed: int = 0) -> Path:
    """The small CLIP at random init (``seed``), with its preprocessing, in open_clip's local-dir format."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from evalsuite.models.card import OPENAI_MEAN, OPENAI_STD

    torch.manual_seed(seed)
    model = open_clip.CLIP(**SMALL_CFG).eval()
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    preprocess = {"size": 224, "mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic",
                  "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": SMALL_CFG, "preprocess_cfg": preprocess}))
    return folder


def build_data(root: Path) -> dict[str, Path]:
    """evalsuite's data root: cifar10 -> the shared export; imagenet1k -> the flat sample; imagenet_sketch -> the
    same images in wnid folders (symlinks)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cifar10").symlink_to(SHARED / "cifar10-test")
    (root / "imagenet1k").symlink_to(SHARED / "imagenet-sample")
    sketch = root / "imagenet_sketch"
    for image in sorted((SHARED / "imagenet-sample").iterdir()):
        wnid = image.name.split("_")[0]
        (sketch / wnid).mkdir(parents=True, exist_ok=True)
        (sketch / wnid / image.name).symlink_to(image)
    return {"cifar10": root / "cifar10", "imagenet1k": sketch, "imagenet_sketch": sketch}


def run_clip_benchmark(model_dir: Path, folders: dict[str, Path], workers: int) -> tuple[float, dict]:
    import open_clip
    import torch
    from clip_benchmark.metrics import zeroshot_classification as zsc
    from torchvision.datasets import ImageFolder

    from evalsuite.catalog import Catalog
    from evalsuite.tasks import build_task

    catalog = Catalog.load()
    start, metrics = time.perf_counter(), {}
    for task, folder in folders.items():
        bank = build_task(catalog.tasks[task]).bank  # the same class names and templates
        model, _, transform = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")  # per dataset
        model.eval()
        tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}")
        loader = torch.utils.data.DataLoader(ImageFolder(str(folder), transform=transform), batch_size=64,
                                             num_workers=workers)
        result = zsc.evaluate(model, loader, tokenizer, bank.classnames, bank.templates, "cpu", amp=False)
        metrics[task] = {name: float(result[name]) for name in METRICS}
    return time.perf_counter() - start, metrics


def run_evalsuite(model_dir: Path, data_root: Path, out: Path, workers: Optional[int]) -> tuple[float, dict]:
    import csv

    from evalsuite.cli import main

    start = time.perf_counter()
    code = main(["run", "--model", f"local-dir:{model_dir}", "--tasks", "cifar10,imagenet1k,imagenet_sketch",
                 "--data-root", str(data_root), "--output-dir", str(out), "--batch-size", "64", "--no-resume",
                 "--bootstrap", "0"] + (["--workers", str(workers)] if workers is not None else []))
    seconds = time.perf_counter() - start
    # exit 3 is expected: the ImageNet sample holds 1,000 of the 50,000 images the tasks state (count_status fewer)
    if code not in (0, 3):
        sys.exit(f"evalsuite run failed with exit code {code}")
    model_out = next(out.iterdir())
    metrics = {}
    for task in ("cifar10", "imagenet1k", "imagenet_sketch"):
        rows = {r["metric"]: r for r in csv.DictReader((model_out / f"{task}.csv").open())}
        if any(r["count_status"] not in ("ok", "fewer") or r["num_failed"] != "0" for r in rows.values()):
            sys.exit(f"evalsuite run: {task} flagged for something other than the sample's size ({model_out})")
        metrics[task] = {name: float(rows[name]["value"]) for name in METRICS}
    return seconds, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="CLIP_benchmark's DataLoader workers")
    parser.add_argument("--evalsuite-workers", type=int, default=None, help="evalsuite's (default: its own)")
    args = parser.parse_args()
    if not (SHARED / "cifar10-test").is_dir():
        sys.exit(f"needs {SHARED} (cifar10-test, imagenet-sample)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["EVALSUITE_CACHE_DIR"] = str(tmp / "cache")
        model_dir = write_model(tmp / "model")
        folders = build_data(tmp / "data")
        cb_seconds, cb_metrics = run_clip_benchmark(model_dir, folders, args.workers)
        cold, cold_metrics = run_evalsuite(model_dir, tmp / "data", tmp / "out-cold", args.evalsuite_workers)
        warm, warm_metrics = run_evalsuite(model_dir, tmp / "data", tmp / "out-warm", args.evalsuite_workers)
    print(f"{'task':<16} {'metric':<22} {'CLIP_benchmark':>15} {'evalsuite':>10} {'warm':>10}   (%)")
    for task in cb_metrics:
        for name in METRICS:
            print(f"{task:<16} {name:<22} {100 * cb_metrics[task][name]:>15.2f} {100 * cold_metrics[task][name]:>10.2f}"
                  f" {100 * warm_metrics[task][name]:>10.2f}")
    print(f"\nwall time: CLIP_benchmark {cb_seconds:.1f} s, evalsuite cold {cold:.1f} s, warm {warm:.1f} s")
    print(f"speed-up cold: {cb_seconds / cold:.2f}x (target >= 5), warm: {cb_seconds / warm:.2f}x (target >= 500)")
    worst = max(abs(cb_metrics[t][m] - cold_metrics[t][m]) for t in cb_metrics for m in METRICS)
    same = worst <= 0.001 and cold_metrics == warm_metrics
    print(f"metrics agree: {'yes' if same else 'NO'} (largest difference {100 * worst:.2f} pp over"
          f" {', '.join(METRICS)}; warm == cold: {cold_metrics == warm_metrics})")


if __name__ == "__main__":
    main()
