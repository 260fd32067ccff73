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


class LoaderPool:
    """Loaders started ahead of their task, so no task waits for its workers to start and fill their queues.

    DataLoader workers are bound to one dataset, so workers cannot persist from one task to the next; instead the
    runner starts the next image set's loader as soon as the current one has handed over its last batch (its
    workers decode while the last batch encodes, metrics are computed, results written and the next classifier
    is built), and ``take`` hands that running loader to the task.
    """

    def __init__(self, batch_size: int, workers: Optional[int], device: torch.device) -> None:
        self.batch_size, self.workers, self.device = batch_size, workers, device
        self._running: dict = {}
        self.taken_running = 0  # loaders handed over already running (started ahead)
        self.taken_cold = 0  # loaders started only when their task asked

    @staticmethod
    def key(dataset) -> tuple:
        spec = getattr(dataset.transform, "spec", None)
        return (len(dataset), hash(tuple(dataset.names)), spec)

    def start(self, dataset) -> None:
        key = self.key(dataset)
        if key not in self._running:
            self._running[key] = iter(make_loader(dataset, self.batch_size, self.workers, self.device))

    def take(self, dataset):
        """The running loader of ``dataset`` (started now if it was not) and its number of batches."""
        iterator = self._running.pop(self.key(dataset), None)
        if iterator is None:
            self.taken_cold += 1
            iterator = iter(make_loader(dataset, self.batch_size, self.workers, self.device))
        else:
            self.taken_running += 1
        return iterator, -(-len(dataset) // self.batch_size)

    def close(self) -> None:
        self._running.clear()  # dropping a DataLoader iterator shuts its workers down
