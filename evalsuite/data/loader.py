"""DataLoader construction: worker count, pinned memory on CUDA, collation that keeps failures, and, on a CPU
device, decoding that takes turns with the encoder (``TurnGate``)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(device: torch.device) -> int:
    """On a GPU host, leave one core to the main process (it feeds the GPU). On a CPU device every core: the
    workers decode only while the encoder waits for a batch (``TurnGate``), so they never compete with it."""
    n = available_cores()
    return max(0, min(8, n if device.type == "cpu" else n - 1))


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method the caller chose, else the platform's default, without fixing it for the process (a
    loader made from the global context would: a training loop calling ``evaluate`` could then no longer choose
    its own)."""
    return multiprocessing.get_context(multiprocessing.get_start_method(allow_none=True)
                                       or multiprocessing.get_all_start_methods()[0])


class TurnGate:
    """Decoding and encoding take turns on a CPU device.

    The encoder's forward pass already uses every core (ViT-B-32 runs 2.02x faster on 2 threads than on 1), so a
    worker decoding at the same time only slows it, by more than its own decoding time. With the gate, workers
    check before each sample that no forward pass is running and wait otherwise; while the encoder waits for its
    next batch, all workers decode in parallel. Measured (2 cores, ``benchmarks/vs_clip_benchmark.py`` data):
    CIFAR-10 1.1-1.2x and 500x375 JPEGs 1.3-1.4x the images/s of one free-running worker.
    """

    def __init__(self) -> None:
        self._open = worker_context().Event()  # set: workers may decode
        self._open.set()

    @contextlib.contextmanager
    def encoding(self) -> Iterator[None]:
        """Hold the workers for the duration (a forward pass); always reopened, so no loader can wait forever."""
        self._open.clear()
        try:
            yield
        finally:
            self._open.set()

    def wait(self) -> None:
        self._open.wait()


class GatedDataset:
    """``dataset`` whose samples are read only while the gate is open (picklable: workers get the gate's Event)."""

    def __init__(self, dataset, gate: TurnGate) -> None:
        self.dataset, self.gate = dataset, gate

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        self.gate.wait()
        return self.dataset[i]


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


def make_loader(dataset, batch_size: int, workers: Optional[int], device: torch.device,
                gate: Optional[TurnGate] = None) -> DataLoader:
    """``workers``: None -> ``default_workers(device)``; ``gate``: the workers take turns with the encoder."""
    ready = getattr(getattr(dataset, "transform", None), "ready", None)
    if ready is not None:  # the decoder's setup errors here, once, not as every sample's failure
        ready()
    workers = default_workers(device) if workers is None else workers
    return DataLoader(
        GatedDataset(dataset, gate) if gate is not None and workers > 0 else dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_samples,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
        multiprocessing_context=worker_context() if workers > 0 else None,
        # the workers' seeds come from a generator of the loader's own: drawing them from torch's global one
        # would shift the random stream of a training loop that evaluates (nothing here is random)
        generator=torch.Generator(),
    )
