"""Loaders started ahead of their task (the Encoder hands the next image set's loader its head start)."""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

from ..data.loader import TurnGate, make_loader


class LoaderPool:
    """Loaders started ahead of their task, so no task waits for its workers to start and fill their queues.

    DataLoader workers are bound to one dataset, so workers cannot persist from one task to the next; instead the
    Encoder starts the next image set's loader as soon as the current one has handed over its last batch (its
    workers decode while the last batch encodes, metrics are computed, results written and the next classifier
    is built), and ``take`` hands that running loader to the task. On a CPU device the workers decode only while
    no forward pass runs (``encoding``; ``data.loader.TurnGate``), so a loader started ahead waits its turn.
    """

    def __init__(self, batch_size: int, workers: Optional[int], device: torch.device) -> None:
        self.batch_size, self.workers, self.device = batch_size, workers, device
        self.gate = TurnGate() if device.type == "cpu" else None
        self._running: dict = {}
        self.taken_running = 0  # loaders handed over already running (started ahead)
        self.taken_cold = 0  # loaders started only when their task asked

    # ``key`` names the pixels a loader yields (``pixel_cache.pixels_key``: pixel spec, data identity, --limit,
    # source, frame reader, library versions), so a loader started for one task is never handed to another that
    # only looks alike (same files and size, another frame rule) when its own task failed before taking it
    def start(self, key: str, dataset) -> None:
        if key not in self._running:
            self._running[key] = iter(make_loader(dataset, self.batch_size, self.workers, self.device, self.gate))

    def take(self, key: str, dataset):
        """The running loader of ``dataset`` (started now if it was not) and its number of batches."""
        iterator = self._running.pop(key, None)
        if iterator is None:
            self.taken_cold += 1
            iterator = iter(make_loader(dataset, self.batch_size, self.workers, self.device, self.gate))
        else:
            self.taken_running += 1
        return iterator, -(-len(dataset) // self.batch_size)

    def encoding(self) -> contextlib.AbstractContextManager:
        """Around every forward pass: on a CPU device the loaders' workers pause for it."""
        return self.gate.encoding() if self.gate is not None else contextlib.nullcontext()

    def close(self) -> None:
        self._running.clear()  # dropping a DataLoader iterator shuts its workers down
