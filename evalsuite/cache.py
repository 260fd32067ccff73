"""Image encoding with OOM back-off, and the on-disk feature cache.

Image features depend on the model, the samples (data identity, ``--limit`` subset) and the resize, never on the
prompts: a run with new templates re-scores cached features without decoding or encoding an image. Text
classifiers are cached by model and prompt digest. Keys are fingerprints (invalidation never depends on time);
files are written atomically (temp file + rename), so a killed run never leaves a truncated entry, and two runs
writing one entry leave one of them whole.

Every entry holds the identity of what it was made for (sample count, digests of the names and labels) and a
sha256 of its contents, both checked when it is read: a damaged or edited entry logs one warning naming it and is
computed again (and overwritten), never scored. Labels always come from the dataset listing, never from a cache.
A cache that cannot be written (read-only, full disk) is one warning; the run goes on with the computed values.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import torch

from .atomic import atomic_write_bytes
from .progress import track

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


def json_digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:16]


def sample_identity(dataset) -> dict:
    """What an image entry is made for: the sample count and digests of the sample names and labels."""
    return {"count": len(dataset), "names": json_digest(list(dataset.names)),
            "labels": json_digest([int(label) for label in dataset.labels])}


def labels_of(dataset, kept: list[int]) -> torch.Tensor:
    """The labels of the kept samples, from the dataset listing (never from a cache entry)."""
    return torch.tensor([int(dataset.labels[i]) for i in kept], dtype=torch.long)


CHECKSUM = "sha256"


def payload_digest(payload: dict) -> str:
    """sha256 over every field but the checksum: tensors by dtype, shape and bytes, the rest as JSON."""
    h = hashlib.sha256()
    for name in sorted(k for k in payload if k != CHECKSUM):
        value = payload[name]
        h.update(name.encode() + b"\0")
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        else:
            h.update(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode())
    return h.hexdigest()


def entry_problem(entry, identity: dict) -> Optional[str]:
    """Why a loaded entry must not be used (None: it verifies)."""
    if not isinstance(entry, dict):
        return "is not a cache entry"
    if CHECKSUM not in entry or "identity" not in entry:
        return "has no checksum (written by an older evalsuite)"
    if entry[CHECKSUM] != payload_digest(entry):
        return "does not match its checksum (changed after it was written)"
    if entry["identity"] != identity:
        return f"was made for other samples ({entry['identity']}, these are {identity})"
    return None


def warn_unwritable(what: str, path: Path, exc: OSError) -> None:
    log.warning("%s %s not written (%s); the run goes on with the computed values", what, path, exc)


class FeatureCache:
    """``<root>/features/<kind>/<key>.pt`` files, each holding its identity and checksum."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "features"

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def has(self, kind: str, key: str) -> bool:
        return self._path(kind, key).is_file()

    def load(self, kind: str, key: str, identity: dict,
             check: Optional[Callable[[dict], Optional[str]]] = None) -> Optional[dict]:
        """The entry if present and verified (checksum, ``identity``, then ``check``), else None: a damaged entry
        logs one warning and the caller computes it again."""
        path = self._path(kind, key)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged entry is recomputed, and says so
            log.warning("feature cache entry %s unreadable (%s: %s); recomputing", path, type(exc).__name__, exc)
            return None
        problem = entry_problem(entry, identity) or (check(entry) if check is not None else None)
        if problem:
            log.warning("feature cache entry %s %s; recomputing", path, problem)
            return None
        return entry

    def save(self, kind: str, key: str, payload: dict, identity: dict) -> None:
        """Write the entry with its identity and checksum; a write that fails is a warning, never an error."""
        entry = {**payload, "identity": identity}
        entry[CHECKSUM] = payload_digest(entry)
        buffer = io.BytesIO()  # serialised first: torch.save's own file writer turns ENOSPC into RuntimeError
        torch.save(entry, buffer)
        try:
            atomic_write_bytes(self._path(kind, key), buffer.getbuffer())
        except OSError as exc:
            warn_unwritable("feature cache entry", self._path(kind, key), exc)


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
                  progress: str = "off", pixels: Optional[tuple["PixelCache", str]] = None,
                  loaders: Optional["LoaderPool"] = None, on_images_read: Optional[Callable[[], None]] = None,
                  ) -> EncodedImages:
    """Decode and encode every sample; under torchrun each rank takes a strided shard and the shards are
    gathered back into sample order, so every rank ends with the same result as a single process (and with the
    same error, when one rank's shard fails).

    ``pixels`` (``--cache-pixels``): a pixel cache and the key of this dataset's entry; when the entry exists and
    verifies, the uint8 pixels are read from it (no decoding, every row checked as it is read), else a
    single-process run stores them while encoding. ``loaders`` may hold this dataset's loader already running;
    ``on_images_read`` is called once every image has been decoded (the runner then starts the next image set's
    loader).
    """
    start = time.perf_counter()
    merged = _from_pixel_cache(model, dataset, batch_size, desc, progress, pixels, on_images_read) if pixels else None
    if merged is None:
        merged = _from_loader(model, dataset, batch_size, workers, desc, progress, pixels, loaders, on_images_read)
    kept, features, failures = merged
    return EncodedImages(features, labels_of(dataset, kept), kept, failures, time.perf_counter() - start)


def _from_pixel_cache(model: "ModelAdapter", dataset, batch_size: int, desc: str, progress: str,
                      pixels: tuple["PixelCache", str], on_images_read: Optional[Callable[[], None]]):
    """(kept, features, failures) encoded from a verified pixel-cache entry; None (on every rank alike) when
    there is none or a row turns out damaged."""
    from .distributed import all_agree, gather_shards, is_writer, shard
    from .pixel_cache import DamagedEntry

    cache, key = pixels
    cached = cache.load(key, sample_identity(dataset), dataset.transform.spec.size)
    if not all_agree(cached is not None):
        return None
    log.info("%s: pixels from the pixel cache (%d images, no decoding)", desc, len(cached.kept))
    if on_images_read is not None:
        on_images_read()
    rows = shard(len(cached.kept))

    def encode():
        try:
            features = [encode_with_backoff(model, batch) for batch in
                        track(cached.batches(rows, batch_size), desc, len(rows), progress, count=len)]
        except DamagedEntry as exc:
            log.warning("pixel cache entry %s: %s; decoding again", cached.path, exc)
            return None
        failures = cached.failures if is_writer() else []  # the entry's failures, counted once
        return [cached.kept[r] for r in rows], torch.cat(features) if features else torch.empty(0, 0), failures

    return gather_shards(encode)


def _from_loader(model: "ModelAdapter", dataset, batch_size: int, workers: Optional[int], desc: str, progress: str,
                 pixels: Optional[tuple["PixelCache", str]], loaders: Optional["LoaderPool"],
                 on_images_read: Optional[Callable[[], None]]):
    """(kept, features, failures) decoded by the loader; a single process fills the pixel-cache entry too."""
    from .data.loader import LoaderPool
    from .distributed import gather_shards, rank_and_size

    part, to_global = shard_of(dataset)
    iterator, total = (loaders or LoaderPool(batch_size, workers, model.device)).take(part)
    batches = _announce_last(iterator, total, on_images_read)
    writer = None
    if pixels is not None and rank_and_size()[1] == 1:  # shards of one entry would need a cross-rank writer
        writer = pixels[0].writer(pixels[1], len(dataset), dataset.transform.spec.size, sample_identity(dataset))

    def encode():
        features, kept, failures = [], [], []
        try:
            # counted in samples (readable and not), this rank's share: a bar or timed lines per progress mode
            for batch, _, indices, failed in track(batches, desc, len(part), progress,
                                                   count=lambda b: len(b[2]) + len(b[3])):
                failures += [(to_global[i] if to_global else i, msg) for i, msg in failed]
                if batch is None:
                    continue
                if isinstance(batch, list):  # JPEGs left for the device's decoder
                    batch = dataset.transform.finish(batch, model.device)
                if writer is not None:
                    writer.add(batch, indices)
                features.append(encode_with_backoff(model, batch))
                kept += [to_global[i] if to_global else i for i in indices.tolist()]
            if writer is not None:
                writer.commit(failures)
        finally:
            if writer is not None:
                writer.discard()  # nothing left to remove after a commit
        return kept, torch.cat(features) if features else torch.empty(0, 0), failures

    return gather_shards(encode)


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


def image_entry_problem(entry: dict, identity: dict) -> Optional[str]:
    """An images entry whose parts disagree (features per kept sample, every sample kept or failed once)."""
    features, kept, failures = entry.get("features"), entry.get("kept"), entry.get("failures")
    if not isinstance(features, torch.Tensor) or not isinstance(kept, list) or not isinstance(failures, list):
        return "lacks features, kept or failures"
    if features.ndim != 2 or features.shape[0] != len(kept) or len(kept) + len(failures) != identity["count"]:
        return f"holds {features.shape[0]} features for {len(kept)} kept and {len(failures)} failed samples"
    if kept != sorted(set(kept)) or (kept and not 0 <= kept[0] <= kept[-1] < identity["count"]):
        return "lists kept samples out of order or out of range"
    return None


def cached_image_features(model: "ModelAdapter", dataset, ctx, key_parts: dict, desc: str) -> EncodedImages:
    """Encoded images from the feature cache when ``ctx.cache_dir`` is set and holds them (verified), else encoded
    now (and stored). ``key_parts`` must identify the samples; the model fingerprint and the pixel spec (size,
    resize, interpolation, decoder) are added here."""
    from .distributed import all_agree, is_writer

    cache = FeatureCache(ctx.cache_dir) if ctx.cache_dir is not None and ctx.model_fingerprint else None
    key = _feature_key(dataset, ctx, key_parts)
    identity = sample_identity(dataset)
    if cache is not None:
        hit = cache.load("images", key, identity, lambda entry: image_entry_problem(entry, identity))
        if all_agree(hit is not None):  # ranks take the same path: encoding gathers across them
            log.info("%s: image features from the cache (%d samples, no decoding)", desc, len(hit["kept"]))
            if ctx.on_images_read is not None:
                ctx.on_images_read()
            return EncodedImages(hit["features"], labels_of(dataset, hit["kept"]), hit["kept"], hit["failures"],
                                 0.0, True)
    encoded = encode_images(model, dataset, ctx.batch_size, ctx.workers, desc, ctx.progress,
                            _pixel_entry(dataset, ctx, key_parts), ctx.loaders, ctx.on_images_read)
    if cache is not None and is_writer():
        cache.save("images", key, {"features": encoded.features, "kept": encoded.kept,
                                   "failures": encoded.failures}, identity)
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
