"""DataLoader construction: worker count, pinned memory on CUDA, and collation that keeps failures."""

from __future__ import annotations

import os
from typing import Optional

import torch
from torch.utils.data import DataLoader


def default_workers() -> int:
    """Leave one core to the main process (it encodes on CPU, or feeds the GPU)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, n - 1))


def collate_samples(batch):
    """Stack the readable samples; hand the failures back as (index, message) pairs."""
    ok = [b for b in batch if b[3] is None]
    failures = [(b[2], b[3]) for b in batch if b[3] is not None]
    if ok:
        images = [b[0] for b in ok]
        # undecoded JPEGs (decoder: cuda) stay a list, finished on the device (UInt8Pixels.finish)
        pixels = torch.stack(images) if all(isinstance(p, torch.Tensor) for p in images) else images
        labels = torch.tensor([b[1] for b in ok], dtype=torch.long)
        indices = torch.tensor([b[2] for b in ok], dtype=torch.long)
    else:
        pixels, labels, indices = None, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    return pixels, labels, indices, failures


def make_loader(dataset, batch_size: int, workers: Optional[int], device: torch.device) -> DataLoader:
    ready = getattr(getattr(dataset, "transform", None), "ready", None)
    if ready is not None:  # the decoder's setup errors here, once, not as every sample's failure
        ready()
    workers = default_workers() if workers is None else workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_samples,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
    )
