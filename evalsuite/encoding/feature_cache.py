"""The on-disk feature cache: image features, text classifiers, caption features and model facts.

Image features depend on the model, the samples (data identity, ``--limit`` subset) and the pixel spec, never on
the prompts: a run with new templates re-scores cached features without decoding or encoding an image. Text
classifiers are cached by model and prompt digest, captions by model and caption digest, and a model's
preprocessing by its fingerprint (so a fully cached re-run needs no weights). Keys are fingerprints (invalidation
never depends on time); files are written atomically (temp file + rename), so a killed run never leaves a
truncated entry, and two runs writing one entry leave one of them whole.

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
from pathlib import Path
from typing import Callable, Optional

import torch

from ..atomic import atomic_write_bytes

log = logging.getLogger(__name__)


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def json_digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:16]


def sample_identity(dataset) -> dict:
    """What an image entry is made for: the sample count and digests of the sample names and labels."""
    return {"count": len(dataset), "names": json_digest(list(dataset.names)),
            "labels": json_digest([int(label) for label in dataset.labels])}


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
