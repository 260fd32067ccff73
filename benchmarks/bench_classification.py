"""Side-by-side throughput: evalsuite's batched prompt-ensemble classifier vs CLIP_benchmark's per-class loop,
on the same model and ImageNet prompts; and image encoding throughput of the classification path.

Prints seconds and ratios measured in this one run. Not part of the tests.
    python benchmarks/bench_classification.py [--classes 200] [--model local-dir:PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from clip_benchmark.metrics import zeroshot_classification as cb

from evalsuite.catalog import Catalog
from evalsuite.encoding import ClassifierRequest
from evalsuite.encoding.encoder import Encoder, EncoderSettings
from evalsuite.models.loading import load_model, resolve_card
from evalsuite.models.tiny import write_tiny_clip
from evalsuite.tasks import build_task
from evalsuite.tasks.base import RunContext


def timed(fn, repeats: int = 1):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=200, help="ImageNet classes to encode (x 80 templates)")
    parser.add_argument("--model", default=None, help="default: a tiny random-init open_clip model")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    spec = args.model or f"local-dir:{write_tiny_clip(Path(tempfile.mkdtemp()) / 'tiny')}"
    model = load_model(resolve_card(spec), device="cpu")
    bank = build_task(Catalog.load().tasks["imagenet1k"]).bank
    names = bank.classnames[: args.classes]
    prompts = [[t.replace("{c}", c) for t in bank.templates] for c in names]

    # a fresh Encoder each time: its run-wide class embeddings would otherwise serve the second call
    t_ours, ours = timed(lambda: Encoder.for_model(model).classifier(ClassifierRequest(prompts, "benchmark")))
    t_cb, theirs = timed(lambda: cb.zero_shot_classifier(model.module, model.tokenize, names, bank.templates,
                                                         "cpu", amp=False))
    diff = (ours - theirs.T).abs().max().item()
    n = len(names) * len(bank.templates)
    print(f"text classifier, {len(names)} classes x {len(bank.templates)} templates = {n} prompts")
    print(f"  evalsuite (batched across classes): {t_ours:7.2f} s  {n / t_ours:8.0f} prompts/s")
    print(f"  CLIP_benchmark (one class a call):  {t_cb:7.2f} s  {n / t_cb:8.0f} prompts/s")
    print(f"  speed-up: {t_cb / t_ours:.2f}x   max |difference| of class embeddings: {diff:.2e}")

    task = build_task(Catalog.load().tasks["demo_shapes"])
    for workers in (0, 1):
        encoder = Encoder.for_model(model, EncoderSettings(batch_size=128, workers=workers))
        t, result = timed(partial(task.evaluate, encoder, RunContext(data_root=Path("."))))
        print(f"demo_shapes end to end, workers={workers}: {t:.2f} s, {result.images_per_second:.0f} images/s")


if __name__ == "__main__":
    main()
