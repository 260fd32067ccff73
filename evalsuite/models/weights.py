"""Weights resolution, in one place: local override -> EVALSUITE_WEIGHTS_DIR -> the card's sources, where a hub
file comes through huggingface_hub's cache (never a hand-written downloader). Never random weights."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ModelLoadError
from ..resources import PACKAGE_DIR
from .card import ModelCard, WeightsSource

LOCAL_KINDS = ("file", "local_dir", "package_dir")


@dataclass(frozen=True)
class ResolvedWeights:
    source: WeightsSource
    path: Optional[Path]  # None for sources another library fetches itself (open_clip tags)

    def describe(self) -> str:
        where = f" -> {self.path}" if self.path else ""
        extra = f"/{self.source.filename}" if self.source.filename else ""
        return f"{self.source.kind}:{self.source.ref}{extra}{where}"


def _local_path(source: WeightsSource) -> Path:
    if source.kind == "package_dir":
        return PACKAGE_DIR / source.ref
    return Path(source.ref).expanduser()


def weights_dir_candidate(source: WeightsSource) -> Optional[Path]:
    """``$EVALSUITE_WEIGHTS_DIR/<filename>`` for a hub file, if that variable is set."""
    folder = os.environ.get("EVALSUITE_WEIGHTS_DIR")
    if folder and source.kind == "hf_file" and source.filename:
        return Path(folder).expanduser() / source.filename
    return None


def pick_source(card: ModelCard, kinds: tuple[str, ...]) -> WeightsSource:
    """The first source of the card that the adapter can use; local files win over hub downloads."""
    usable = [s for s in card.weights if s.kind in kinds]
    if not usable:
        raise ModelLoadError(
            f"model card {card.name!r} lists no weights this adapter ({card.adapter}) can load (it takes"
            f" {', '.join(kinds)}); pass --weights FILE"
        )
    for source in usable:
        candidate = weights_dir_candidate(source)
        if candidate is not None and candidate.is_file():
            return WeightsSource("file", str(candidate), notes=f"EVALSUITE_WEIGHTS_DIR copy of {source.ref}")
    return usable[0]


def resolve(source: WeightsSource, download: bool = True) -> ResolvedWeights:
    """A local path for ``source``; hub files are fetched into (or found in) the Hugging Face cache."""
    if source.kind in LOCAL_KINDS:
        path = _local_path(source)
        if not path.exists():
            raise ModelLoadError(f"weights {path} not found ({source.kind} source); check the path")
        return ResolvedWeights(source, path)
    if source.kind == "hf_file":
        return ResolvedWeights(source, _hf_file(source, download))
    return ResolvedWeights(source, None)


def _hf_file(source: WeightsSource, download: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(source.ref, source.filename, revision=source.revision,
                                    local_files_only=not download))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        folder = os.environ.get("EVALSUITE_WEIGHTS_DIR", "<dir>")
        raise ModelLoadError(
            f"weights file {source.filename} of {source.ref} is not available here ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); looked in the Hugging Face cache"
            f" ({os.environ.get('HF_HUB_CACHE') or os.environ.get('HF_HOME') or '~/.cache/huggingface'}) and"
            f" EVALSUITE_WEIGHTS_DIR. Download it and either pass --weights /path/{source.filename} or put it in"
            f" {folder}/{source.filename} with EVALSUITE_WEIGHTS_DIR={folder}"
        ) from exc
