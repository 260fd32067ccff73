"""``--cache-pixels``: a task's preprocessed images stored once as uint8 at the input size, memory-mapped.

The pixels depend on the samples and the ``PixelSpec`` (size, resize, interpolation, decoder), not on the model,
so a second model with the same preprocessing (every EVA-CLIP at 224, say) reads them instead of decoding a
single JPEG; mean/std are applied later, on the device. An entry is ``<key>.npy`` (rows in sample order of the
readable samples; ``np.load(mmap_mode="r")`` reads it lazily) plus ``<key>.json``, its index; the JSON is written
last, so an entry without it is incomplete and ignored. ImageNet-1K at 224 takes 7.5 GB; at 448, 30 GB.

Integrity: the index holds the identity of the samples (count, digests of names and labels; the labels scored
always come from the dataset listing), a sha256 of each row and a sha256 of the index itself. Loading checks the
index; each row is checked as it is read for the model, so verification costs no second pass over the file
(sha256 runs at about 1.8 GB/s, 86 us per 224-px row, in the thread that reads ahead while the previous batch is
encoded). A mismatch logs one warning naming the entry and the task decodes again, rewriting the entry. Writers
publish under an exclusive ``flock`` and readers open under a shared one, so two runs filling the same entry never
leave (or read) one's index with the other's pixels.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from ..atomic import FILE_MODE, atomic_write_bytes, new_temp_file

log = logging.getLogger(__name__)

FORMAT = 2  # 1: no checksums, labels stored (and scored) from the index
ROW_DIGEST = 16  # bytes of each row's sha256 kept in the index (detects damage; no adversary to resist)
INDEX_KEYS = ("format", "identity", "shape", "kept", "failures", "rows_sha256", "index_sha256")


class DamagedEntry(Exception):
    """A pixel-cache row whose bytes do not match the checksum in its index."""


def row_digests(block: np.ndarray) -> bytes:
    return b"".join(hashlib.sha256(row).digest()[:ROW_DIGEST] for row in block)


def index_digest(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "index_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class CachedPixels:
    path: Path  # the .npy file, for messages
    pixels: np.ndarray  # (>= len(kept), 3, S, S) uint8, memory-mapped
    kept: list[int]  # dataset index of each row
    failures: list[tuple[int, str]]  # unreadable samples: (dataset index, message)
    digests: bytes  # ROW_DIGEST bytes per row

    def batches(self, rows: list[int], batch_size: int) -> Iterator[torch.Tensor]:
        """The given rows in batches, each row checked against its digest as it is copied out of the map (raises
        DamagedEntry); the next batch is read in a thread while the caller encodes the current one."""
        chunks = [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]
        with ThreadPoolExecutor(1) as pool:
            ahead = pool.submit(self._read, chunks[0]) if chunks else None
            for number in range(len(chunks)):
                block = ahead.result()
                ahead = pool.submit(self._read, chunks[number + 1]) if number + 1 < len(chunks) else None
                yield block

    def _read(self, rows: list[int]) -> torch.Tensor:
        contiguous = rows == list(range(rows[0], rows[0] + len(rows)))
        block = np.array(self.pixels[rows[0]:rows[0] + len(rows)]) if contiguous else np.asarray(self.pixels[rows])
        for row, pixels in zip(rows, block):
            if hashlib.sha256(pixels).digest()[:ROW_DIGEST] != self.digests[row * ROW_DIGEST:(row + 1) * ROW_DIGEST]:
                raise DamagedEntry(f"row {row} (sample {self.kept[row]}) does not match its checksum")
        return torch.from_numpy(block)


def index_problem(meta, identity: dict) -> Optional[str]:
    """Why an index must not be used (None: it verifies)."""
    if not isinstance(meta, dict):
        return "has an index that is not a JSON object"
    missing = [k for k in INDEX_KEYS if k not in meta]
    if missing:
        return f"has an index without {', '.join(missing)} (written by an older evalsuite, or damaged)"
    if meta["index_sha256"] != index_digest(meta):
        return "has an index that does not match its checksum (changed after it was written)"
    if meta["identity"] != identity:
        return f"was made for other samples ({meta['identity']}, these are {identity})"
    kept, failures = meta["kept"], meta["failures"]
    if len(kept) + len(failures) != identity["count"] or len(meta["rows_sha256"]) != 2 * ROW_DIGEST * len(kept):
        return f"lists {len(kept)} rows and {len(failures)} failures for {identity['count']} samples"
    return None


def array_problem(pixels: np.ndarray, rows: int, size: int) -> Optional[str]:
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (3, size, size) or len(pixels) < rows:
        return f"holds a {pixels.dtype} array of shape {pixels.shape}, not {rows} rows of 3x{size}x{size} uint8"
    return None


@contextlib.contextmanager
def locked(root: Path, mode: int) -> Iterator[None]:
    """``flock`` on ``<root>/.lock`` (exclusive to publish an entry, shared to open one). Where no lock can be
    had (a read-only cache, a filesystem without locks) it goes on unlocked: the checksums still catch a pair
    from two writers."""
    fd = None
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        with contextlib.suppress(OSError):
            fd = os.open(root / ".lock", flags, FILE_MODE)
            break
    try:
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, mode)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def pixels_key(spec: dict, key_parts: dict) -> str:
    """The identity of the pixels of one sample set under one pixel spec (``key_parts``: data identity, --limit,
    source, frame reader) and the library versions that make them: the pixel-cache entry, and the loader that
    decodes them (``LoaderPool``)."""
    from ..data.pixels import pixel_libraries

    payload = json.dumps({"spec": spec, "samples": key_parts, "libraries": pixel_libraries()}, sort_keys=True,
                         default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class PixelCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "pixels"

    def has(self, key: str) -> bool:
        return (self.root / f"{key}.json").is_file()  # written last: present only for complete entries

    def load(self, key: str, identity: dict, size: int) -> Optional[CachedPixels]:
        """The entry made for ``identity`` at ``size`` px if present and its index verifies, else None (one warning
        when it is present but damaged). Rows are verified as they are read (``CachedPixels.batches``)."""
        meta_path, data_path = self.root / f"{key}.json", self.root / f"{key}.npy"
        if not meta_path.is_file():
            return None
        try:
            with locked(self.root, fcntl.LOCK_SH):  # the index and the pixels of one writer
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                pixels = np.load(data_path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as exc:  # EOFError: numpy on an empty file
            log.warning("pixel cache entry %s unreadable (%s: %s); decoding again", data_path, type(exc).__name__,
                        exc)
            return None
        problem = index_problem(meta, identity) or array_problem(pixels, len(meta["kept"]), size)
        if problem:
            log.warning("pixel cache entry %s %s; decoding again", data_path, problem)
            return None
        return CachedPixels(data_path, pixels, meta["kept"], [tuple(f) for f in meta["failures"]],
                            bytes.fromhex(meta["rows_sha256"]))

    def writer(self, key: str, capacity: int, size: int, identity: dict) -> "PixelCacheWriter":
        return PixelCacheWriter(self.root, key, capacity, size, identity)


class PixelCacheWriter:
    """Fills a new entry batch by batch while the images are encoded; ``commit`` publishes it.

    Rows go out with plain writes (a full disk is an OSError here, where stores into a memory map of a sparse
    file would kill the process with SIGBUS). Any OSError (read-only cache, ENOSPC) logs one warning and drops
    the entry; the run goes on with the pixels it has."""

    def __init__(self, root: Path, key: str, capacity: int, size: int, identity: dict) -> None:
        self.root, self.key, self.identity = root, key, identity
        self.shape = (max(capacity, 1), 3, size, size)
        self.file, self.tmp, self.offset = None, None, 0
        self.rows = 0
        self.kept: list[int] = []
        self.digests: list[bytes] = []
        self._guard(self._create)

    def _create(self) -> None:
        self.tmp = new_temp_file(self.root, suffix=".npy.tmp")
        self.file = open(self.tmp, "r+b")
        np.lib.format.write_array_header_1_0(self.file, {"descr": "|u1", "fortran_order": False,
                                                         "shape": self.shape})
        self.offset = self.file.tell()
        self.file.truncate(self.offset + int(np.prod(self.shape)))  # sparse: blocks are taken as rows arrive

    def _guard(self, step: Callable[[], None]) -> None:
        try:
            step()
        except OSError as exc:
            log.warning("pixel cache entry %s not written (%s); the run goes on without it",
                        self.root / f"{self.key}.npy", exc)
            self.discard()

    def add(self, pixels: torch.Tensor, indices: torch.Tensor) -> None:
        if self.file is None:  # dropped after a failed write
            return
        block = np.ascontiguousarray(pixels.cpu().numpy())
        self._guard(lambda: self._write(block))
        if self.file is not None:
            self.rows += len(block)
            self.kept += indices.tolist()
            self.digests.append(row_digests(block))

    def _write(self, block: np.ndarray) -> None:
        self.file.seek(self.offset + self.rows * block[0].nbytes)
        self.file.write(memoryview(block).cast("B"))

    def commit(self, failures: list[tuple[int, str]]) -> None:
        if self.file is not None:
            self._guard(lambda: self._publish(failures))

    def _publish(self, failures: list[tuple[int, str]]) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())  # on disk before the (fsynced) index names it: no empty .npy after a crash
        self.file.close()  # a write error shows by here, before anything is published
        self.file = None
        meta = {"format": FORMAT, "identity": self.identity, "shape": list(self.shape), "kept": self.kept,
                "failures": [list(f) for f in failures], "rows_sha256": b"".join(self.digests).hex()}
        meta["index_sha256"] = index_digest(meta)
        index, data = self.root / f"{self.key}.json", self.root / f"{self.key}.npy"
        with locked(self.root, fcntl.LOCK_EX):
            index.unlink(missing_ok=True)  # killed between the two renames: no entry, rather than a mixed one
            os.replace(self.tmp, data)
            self.tmp = None
            atomic_write_bytes(index, json.dumps(meta).encode())

    def discard(self) -> None:
        """Drop an unpublished entry (a no-op after ``commit``)."""
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None
