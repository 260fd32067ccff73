"""The image encoding loops: from a verified pixel-cache entry, or from a running loader (filling the pixel
cache), each rank on its strided shard with the shards gathered back into sample order; CUDA OOM back-off."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch

from ..progress import track
from .feature_cache import sample_identity

if TYPE_CHECKING:
    from .loaders import LoaderPool
    from .pixel_cache import PixelCache

log = logging.getLogger(__name__)

Encode = Callable[[torch.Tensor], torch.Tensor]  # one batch of pixels -> features on the CPU (with back-off)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass
class BatchLimit:
    """The image batch the device holds, lowered on CUDA out-of-memory for the rest of the run (None: any)."""

    size: Optional[int] = None
    logged: bool = False


def encode_with_backoff(encode: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor,
                        limit: BatchLimit) -> torch.Tensor:
    """Encode a batch in chunks of ``limit.size``; on CUDA out-of-memory halve the limit (down to 1) and retry,
    logging the first time. Per-sample features do not depend on the chunking."""
    out, start = [], 0
    while start < len(pixels):
        size = min(limit.size or len(pixels), len(pixels) - start)
        try:
            out.append(encode(pixels[start:start + size]).cpu())
            start += size
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc) or size == 1:
                raise
            limit.size = max(1, size // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if not limit.logged:
                log.warning("CUDA out of memory at image batch %d; encoding in chunks of %d from now on", size,
                            limit.size)
                limit.logged = True
    return torch.cat(out)


def from_pixel_cache(encode_batch: Encode, dataset, batch_size: int, desc: str, progress: str,
                     pixels: tuple["PixelCache", str], on_images_read: Optional[Callable[[], None]]):
    """(kept, features, failures) encoded from a verified pixel-cache entry; None (on every rank alike) when
    there is none or a row turns out damaged."""
    from ..distributed import all_agree, gather_shards, is_writer, rank_and_size, shard
    from .pixel_cache import DamagedEntry

    cache, key = pixels
    cached = cache.load(key, sample_identity(dataset), dataset.transform.spec.size)
    if not all_agree(cached is not None):
        return None
    log.info("%s: pixels from the pixel cache (%d images, no decoding)", desc, len(cached.kept))
    if on_images_read is not None:
        on_images_read()
    rows = shard(len(cached.kept))

    def encode_shard():
        try:
            features = [encode_batch(batch) for batch in
                        track(cached.batches(rows, batch_size), desc, len(rows), progress, count=len)]
        except DamagedEntry as exc:
            log.warning("pixel cache entry %s: %s; decoding again", cached.path, exc)
            return None
        failures = cached.failures if is_writer() else []  # the entry's failures, counted once
        return [cached.kept[r] for r in rows], torch.cat(features) if features else torch.empty(0, 0), failures

    gathered = gather_shards(encode_shard)
    if gathered is None and is_writer() and rank_and_size()[1] > 1:  # another rank's log is silent
        log.warning("pixel cache entry %s: damaged (found by this or another rank); decoding again", cached.path)
    return gathered


def from_loader(encode_batch: Encode, device: torch.device, dataset, desc: str, progress: str,
                pixels: Optional[tuple["PixelCache", str]], loaders: "LoaderPool", loader_key: str,
                on_images_read: Optional[Callable[[], None]]):
    """(kept, features, failures) decoded by the loader; a single process fills the pixel-cache entry too."""
    from ..distributed import gather_shards, rank_and_size

    part, to_global = shard_of(dataset)
    iterator, total = loaders.take(loader_key, part)
    batches = announce_last(iterator, total, on_images_read)
    writer = None
    if pixels is not None and rank_and_size()[1] == 1:  # shards of one entry would need a cross-rank writer
        writer = pixels[0].writer(pixels[1], len(dataset), dataset.transform.spec.size, sample_identity(dataset))

    def encode_shard():
        features, kept, failures = [], [], []
        try:
            # counted in samples (readable and not), this rank's share: a bar or timed lines per progress mode
            for batch, _, indices, failed in track(batches, desc, len(part), progress,
                                                   count=lambda b: len(b[2]) + len(b[3])):
                failures += [(to_global[i] if to_global else i, msg) for i, msg in failed]
                if batch is None:
                    continue
                if isinstance(batch, list):  # JPEGs left for the device's decoder
                    batch = dataset.transform.finish(batch, device)
                if writer is not None:
                    writer.add(batch, indices)
                features.append(encode_batch(batch))
                kept += [to_global[i] if to_global else i for i in indices.tolist()]
            if writer is not None:
                writer.commit(failures)
        finally:
            if writer is not None:
                writer.discard()  # nothing left to remove after a commit
        return kept, torch.cat(features) if features else torch.empty(0, 0), failures

    return gather_shards(encode_shard)


def shard_of(dataset):
    """This rank's part of ``dataset`` and the map from its positions to dataset indices (None: all of it)."""
    from ..distributed import rank_and_size, shard

    if rank_and_size()[1] == 1:
        return dataset, None
    to_global = shard(len(dataset))
    return dataset.subset(to_global), to_global


def announce_last(iterator, total: int, on_images_read: Optional[Callable[[], None]]):
    """Yield the loader's batches; call ``on_images_read`` when the last one arrives (all decoding done)."""
    if total == 0 and on_images_read is not None:
        on_images_read()
    for number, batch in enumerate(iterator, start=1):
        if number == total and on_images_read is not None:
            on_images_read()
        yield batch
