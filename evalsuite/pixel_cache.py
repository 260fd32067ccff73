"""``--cache-pixels``: a task's preprocessed images stored once as uint8 at the input size, memory-mapped.

The pixels depend on the samples and the ``PixelSpec`` (size, resize, interpolation, decoder), not on the model,
so a second model with the same preprocessing (every EVA-CLIP at 224, say) reads them instead of decoding a
single JPEG; mean/std are applied later, on the device. An entry is ``<key>.npy`` (rows in sample order of the
readable samples; ``np.load(mmap_mode="r")`` reads it lazily) plus ``<key>.json``; the JSON is written last, so
an entry without it is incomplete and ignored. ImageNet-1K at 224 takes 7.5 GB; at 448, 30 GB.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from .atomic import atomic_write_bytes, new_temp_file

log = logging.getLogger(__name__)


@dataclass
class CachedPixels:
    pixels: np.ndarray  # (len(kept), 3, S, S) uint8, memory-mapped
    labels: list[int]
    kept: list[int]  # dataset index of each row
    failures: list[tuple[int, str]]  # unreadable samples: (dataset index, message)

    def batches(self, rows: list[int], batch_size: int) -> Iterator[tuple]:
        """Loader-shaped batches ``(pixels, labels, dataset indices, failures)`` of the given rows."""
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            contiguous = chunk == list(range(chunk[0], chunk[0] + len(chunk)))
            block = self.pixels[chunk[0]:chunk[0] + len(chunk)] if contiguous else self.pixels[chunk]
            yield (torch.from_numpy(np.array(block)), torch.tensor([self.labels[r] for r in chunk]),
                   torch.tensor([self.kept[r] for r in chunk]), [])


class PixelCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "pixels"

    @staticmethod
    def key(spec: dict, key_parts: dict) -> str:
        """The entry of one pixel spec and one sample set (``key_parts``: data identity, --limit, source)."""
        payload = json.dumps({"spec": spec, "samples": key_parts}, sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    def has(self, key: str) -> bool:
        return (self.root / f"{key}.json").is_file()  # written last: present only for complete entries

    def load(self, key: str) -> Optional[CachedPixels]:
        meta_path, data_path = self.root / f"{key}.json", self.root / f"{key}.npy"
        if not (meta_path.is_file() and data_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            pixels = np.load(data_path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            log.warning("pixel cache entry %s unreadable (%s); decoding again", data_path, exc)
            return None
        if pixels.shape[0] < len(meta["kept"]):
            log.warning("pixel cache entry %s is shorter than its index; decoding again", data_path)
            return None
        return CachedPixels(pixels, meta["labels"], meta["kept"], [tuple(f) for f in meta["failures"]])

    def writer(self, key: str, capacity: int, size: int) -> "PixelCacheWriter":
        return PixelCacheWriter(self.root, key, capacity, size)


class PixelCacheWriter:
    """Fills a new entry batch by batch while the images are encoded; ``commit`` publishes it."""

    def __init__(self, root: Path, key: str, capacity: int, size: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.key = root, key
        self.tmp = new_temp_file(root, suffix=".npy.tmp")
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.uint8,
                                               shape=(max(capacity, 1), 3, size, size))
        self.rows = 0
        self.labels: list[int] = []
        self.kept: list[int] = []

    def add(self, pixels: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
        n = len(pixels)
        self.array[self.rows:self.rows + n] = pixels.cpu().numpy()
        self.rows += n
        self.labels += labels.tolist()
        self.kept += indices.tolist()

    def commit(self, failures: list[tuple[int, str]]) -> None:
        self.array.flush()
        del self.array
        os.replace(self.tmp, self.root / f"{self.key}.npy")
        meta = {"labels": self.labels, "kept": self.kept, "failures": [list(f) for f in failures]}
        atomic_write_bytes(self.root / f"{self.key}.json", json.dumps(meta).encode())

    def discard(self) -> None:
        self.array = None
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
