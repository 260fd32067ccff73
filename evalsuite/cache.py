"""Image encoding with OOM back-off, and the on-disk feature cache.

Image features depend on the model, the samples (data identity, ``--limit`` subset) and the resize, never on the
prompts: a run with new templates re-scores cached features without decoding or encoding an image. Text
classifiers are cached by model and prompt digest. Keys are fingerprints (invalidation never depends on time);
files are written atomically (temp file + rename), so a killed run never leaves a truncated entry.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import torch

from .atomic import atomic_path

if TYPE_CHECKING:
    from .models.base import ModelAdapter
    from .data.loader import LoaderPool
    from .pixel_cache import PixelCache

log = logging.getLogger(__name__)


@dataclass
class EncodedImages:
    features: torch.Tensor  # (kept, D) float32 on the CPU, L2-normalised
    labels: torch.Tensor  # (kept,)
    kept: list[int]  # dataset indices of the readable samples, in order
    failures: list[str]  # one message per unreadable sample
    seconds: float  # decoding + encoding time (0 when read from the cache)
    from_cache: bool = False


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class FeatureCache:
    """``<root>/features/<kind>/<key>.pt`` files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "features"

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def has(self, kind: str, key: str) -> bool:
        return self._path(kind, key).is_file()

    def load(self, kind: str, key: str) -> Optional[dict]:
        path = self._path(kind, key)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged entry is recomputed, and says so
            log.warning("feature cache entry %s unreadable (%s); recomputing", path, exc)
            return None

    def save(self, kind: str, key: str, payload: dict) -> None:
        with atomic_path(self._path(kind, key)) as tmp:
            torch.save(payload, tmp)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def encode_with_backoff(model: "ModelAdapter", pixels: torch.Tensor) -> torch.Tensor:
    """Encode a batch in chunks of ``model.image_batch_limit``; on CUDA out-of-memory halve the limit (down to 1)
    and retry, logging the first time. Per-sample features do not depend on the chunking."""
    out, start = [], 0
    while start < len(pixels):
        size = min(model.image_batch_limit or len(pixels), len(pixels) - start)
        try:
            out.append(model.encode_image(pixels[start:start + size]).cpu())
            start += size
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc) or size == 1:
                raise
            model.image_batch_limit = max(1, size // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if not model.oom_logged:
                log.warning("CUDA out of memory at image batch %d; encoding in chunks of %d from now on", size,
                            model.image_batch_limit)
                model.oom_logged = True
    return torch.cat(out)


def encode_images(model: "ModelAdapter", dataset, batch_size: int, workers: Optional[int], desc: str,
                  progress: bool = False, pixels: Optional[tuple["PixelCache", str]] = None,
                  loaders: Optional["LoaderPool"] = None, on_images_read: Optional[Callable[[], None]] = None,
                  ) -> EncodedImages:
    """Decode and encode every sample; under torchrun each rank takes a strided shard and the shards are
    gathered back into sample order, so every rank ends with the same result as a single process.

    ``pixels`` (``--cache-pixels``): a pixel cache and the key of this dataset's entry; when the entry exists the
    uint8 pixels are read from it (no decoding), else a single-process run stores them while encoding.
    ``loaders`` may hold this dataset's loader already running; ``on_images_read`` is called once every image has
    been decoded (the runner then starts the next image set's loader).
    """
    from tqdm import tqdm

    from .data.loader import LoaderPool
    from .distributed import gather_shards, rank_and_size, shard

    distributed = rank_and_size()[1] > 1
    start = time.perf_counter()
    cached = pixels[0].load(pixels[1]) if pixels is not None else None
    writer = None
    if cached is not None:
        log.info("%s: pixels from the pixel cache (%d images, no decoding)", desc, len(cached.kept))
        rows = shard(len(cached.kept)) if distributed else list(range(len(cached.kept)))
        own_failures = cached.failures if rank_and_size()[0] == 0 else []
        batches = iter([(None, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), own_failures)])
        batches = itertools.chain(batches, cached.batches(rows, batch_size))
        to_global = None
        if on_images_read is not None:
            on_images_read()
    else:
        part, to_global = shard_of(dataset)
        iterator, total = (loaders or LoaderPool(batch_size, workers, model.device)).take(part)
        batches = _announce_last(iterator, total, on_images_read)
        if pixels is not None and not distributed:  # shards of one entry would need a cross-rank writer
            writer = pixels[0].writer(pixels[1], len(dataset), dataset.transform.spec.size)
    features, labels, kept, failures = [], [], [], []
    try:
        for batch, batch_labels, indices, failed in tqdm(batches, desc=desc, disable=not progress, leave=False):
            failures += [(to_global[i] if to_global else i, msg) for i, msg in failed]
            if batch is None:
                continue
            if isinstance(batch, list):  # JPEGs left for the device's decoder
                batch = dataset.transform.finish(batch, model.device)
            if writer is not None:
                writer.add(batch, batch_labels, indices)
            features.append(encode_with_backoff(model, batch))
            labels.append(batch_labels)
            kept += [to_global[i] if to_global else i for i in indices.tolist()]
        if writer is not None:
            writer.commit(failures)
            writer = None
    finally:
        if writer is not None:
            writer.discard()
    feats = torch.cat(features) if features else torch.empty(0, 0)
    labs = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
    if distributed:
        kept, feats, labs, messages = gather_shards(kept, feats, labs, failures)
    else:
        messages = [msg for _, msg in sorted(failures)]
    return EncodedImages(feats, labs, kept, messages, time.perf_counter() - start)


def shard_of(dataset):
    """This rank's part of ``dataset`` and the map from its positions to dataset indices (None: all of it)."""
    from .distributed import rank_and_size, shard

    if rank_and_size()[1] == 1:
        return dataset, None
    to_global = shard(len(dataset))
    return dataset.subset(to_global), to_global


def _announce_last(iterator, total: int, on_images_read: Optional[Callable[[], None]]):
    """Yield the loader's batches; call ``on_images_read`` when the last one arrives (all decoding done)."""
    if total == 0 and on_images_read is not None:
        on_images_read()
    for number, batch in enumerate(iterator, start=1):
        if number == total and on_images_read is not None:
            on_images_read()
        yield batch


def _feature_key(dataset, ctx, key_parts: dict) -> str:
    return cache_key(model=ctx.model_fingerprint, pixels=dataset.transform.spec.as_dict(), **key_parts)


def _pixel_entry(dataset, ctx, key_parts: dict) -> Optional[tuple["PixelCache", str]]:
    if ctx.pixel_cache_dir is None:
        return None
    from .pixel_cache import PixelCache

    cache = PixelCache(ctx.pixel_cache_dir)
    return cache, cache.key(dataset.transform.spec.as_dict(), key_parts)


def cached_image_features(model: "ModelAdapter", dataset, ctx, key_parts: dict, desc: str) -> EncodedImages:
    """Encoded images from the feature cache when ``ctx.cache_dir`` is set and holds them, else encoded now (and
    stored). ``key_parts`` must identify the samples; the model fingerprint and the pixel spec (size, resize,
    interpolation, decoder) are added here."""
    from .distributed import is_writer

    cache = FeatureCache(ctx.cache_dir) if ctx.cache_dir is not None and ctx.model_fingerprint else None
    key = _feature_key(dataset, ctx, key_parts)
    if cache is not None:
        hit = cache.load("images", key)
        if hit is not None and len(hit["names"]) == len(dataset.names) and hit["names"] == list(dataset.names):
            log.info("%s: image features from the cache (%d samples, no decoding)", desc, len(hit["kept"]))
            if ctx.on_images_read is not None:
                ctx.on_images_read()
            return EncodedImages(hit["features"], hit["labels"], hit["kept"], hit["failures"], 0.0, True)
    encoded = encode_images(model, dataset, ctx.batch_size, ctx.workers, desc, ctx.progress,
                            _pixel_entry(dataset, ctx, key_parts), ctx.loaders, ctx.on_images_read)
    if cache is not None and is_writer():
        cache.save("images", key, {"features": encoded.features, "labels": encoded.labels, "kept": encoded.kept,
                                   "failures": encoded.failures, "names": list(dataset.names)})
    return encoded


def start_loading(dataset, ctx, key_parts: dict) -> None:
    """Start decoding ``dataset`` ahead of its task (``ctx.loaders``), unless its features or pixels are cached."""
    if ctx.loaders is None:
        return
    if ctx.cache_dir is not None and ctx.model_fingerprint:
        if FeatureCache(ctx.cache_dir).has("images", _feature_key(dataset, ctx, key_parts)):
            return
    entry = _pixel_entry(dataset, ctx, key_parts)
    if entry is not None and entry[0].has(entry[1]):
        return
    ctx.loaders.start(shard_of(dataset)[0])
