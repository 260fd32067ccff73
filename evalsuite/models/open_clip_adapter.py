"""open_clip models: built-in architectures with hub tags or local weight files, and ``local-dir:`` folders."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Optional

import torch

from ..errors import ModelLoadError
from .base import ModelAdapter, file_digest, folder_digests
from .card import WeightsSource
from .weights import (
    check_weights_file,
    explain_weights_error,
    hub_file,
    hub_offline_mode,
    open_clip_tag_files,
    open_clip_tag_identity,
    resolve,
    state_dict_mismatch,
)

log = logging.getLogger(__name__)

class OpenClipAdapter(ModelAdapter):
    weight_kinds = ("package_dir", "local_dir", "file", "open_clip_tag")

    @classmethod
    def weights_identity(cls, card) -> dict:
        source = cls.weights_source(card)
        if source.kind == "open_clip_tag":
            return open_clip_tag_identity(card.architecture, source.ref)
        weights = _weights_file(source)
        if source.kind == "file":
            return {"file_sha256": file_digest(weights)}
        # a folder: open_clip reads its open_clip_config.json (architecture, quick_gelu, mean/std) and, for an
        # hf_tokenizer_name, the tokenizer files beside it; the other checkpoints there are never read
        return {"folder_files": folder_digests(weights.parent, unread=_checkpoints(weights.parent) - {weights})}

    def _build(self) -> torch.nn.Module:
        import open_clip  # here, not at the top: a fully cached re-run names this adapter but loads no model

        source = self.weights_source(self.card)
        model_name, pretrained, hub, weights_path = self.card.architecture, None, None, None
        if source.kind in ("package_dir", "local_dir"):
            weights_path = _weights_file(source)
            model_name = f"local-dir:{weights_path.parent}"
        elif source.kind == "file":
            weights_path = _weights_file(source)
            pretrained = str(weights_path)
        else:  # open_clip_tag: the tag's hub file is put in the hub cache first (weights.hub_file), then open_clip
            pretrained = source.ref
            known = open_clip.list_pretrained_tags_by_model(model_name)
            if pretrained not in known:
                raise ModelLoadError(
                    f"open_clip has no pretrained tag {pretrained!r} for {model_name!r}; "
                    f"known: {', '.join(known) or 'none'}"
                )
            hub = open_clip_tag_files(model_name, pretrained)
            if hub is not None:  # cached, or downloaded now; else one error at once (no retries on a dead hub)
                repo, names = hub
                weights_path = hub_file(repo, names, local_name=f"{repo}/{names[0]}")
                log.info("weights of %s/%s: %s", model_name, pretrained, weights_path)
        if weights_path is not None and source.kind != "open_clip_tag":
            check_weights_file(weights_path)  # a user's file: empty, truncated, not a checkpoint, said in one line
        self.model_name = model_name
        try:
            # require_pretrained: never hand back a randomly initialised model when weights were asked for;
            # offline mode: the tag's file is in the hub cache now, open_clip takes it from there without a request
            with hub_offline_mode() if hub is not None else contextlib.nullcontext():
                model = open_clip.create_model(
                    model_name, pretrained=pretrained, device=self.device, require_pretrained=True
                )
        except Exception as exc:  # noqa: BLE001 - torch, pickle, zip and safetensors each raise their own kinds
            error = _load_error(exc, model_name, pretrained, weights_path, source.kind)
            if error is None:
                raise
            raise error from exc
        self._tokenizer = open_clip.get_tokenizer(model_name)
        self._preprocess = self._preprocess_cfg(model)
        return model

    def _preprocess_cfg(self, model) -> dict:
        card = self.card
        if card.preprocess is not None:
            p = card.preprocess
            return {
                "size": card.image_size,
                "mean": list(p.mean),
                "std": list(p.std),
                "interpolation": p.interpolation,
                "resize_mode": p.resize_mode,
            }
        # no preprocessing on the card: the weights' own (open_clip pretrained/local-dir config)
        import open_clip

        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg["size"]
        return {
            "size": size if isinstance(size, int) else list(size),
            "mean": list(cfg["mean"]),
            "std": list(cfg["std"]),
            "interpolation": cfg.get("interpolation", "bicubic"),
            "resize_mode": cfg.get("resize_mode", "shortest"),
        }

    def preprocess_description(self) -> dict:
        return dict(self._preprocess)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self._tokenizer(texts)

    def _encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(pixels)

    def _encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.module.encode_text(tokens)

    def _text_tower(self):
        return self.module if hasattr(self.module, "token_embedding") else getattr(self.module, "text", None)

def _load_error(exc: Exception, model_name: str, pretrained, weights_path, kind: str) -> Optional[ModelLoadError]:
    """One line for a model open_clip could not build with these weights; None for an unexpected error (a bug,
    shown with its traceback)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    mismatch = state_dict_mismatch(str(exc))
    if mismatch:
        return ModelLoadError(f"weights {weights_path or pretrained} do not fit architecture {model_name!r}:"
                              f" {mismatch}")
    reason = explain_weights_error(weights_path, exc) if weights_path is not None else None
    if reason:
        return ModelLoadError(reason)
    if isinstance(exc, RuntimeError) and "size mismatch" in str(exc):
        return ModelLoadError(f"weights {weights_path or pretrained} do not fit architecture {model_name!r}: {first}")
    if isinstance(exc, RuntimeError):
        return ModelLoadError(f"cannot load open_clip model {model_name!r} ({pretrained}): {first}")
    if isinstance(exc, (OSError, ValueError, KeyError, EOFError)):
        hint = (" (the hub is unreachable? download the weights file and pass --weights FILE, or set HF_HOME"
                " to a cache that holds it)" if kind == "open_clip_tag" else "")
        return ModelLoadError(f"cannot load open_clip model {model_name!r}: {first}{hint}")
    return None


def _weights_file(source: WeightsSource) -> Path:
    """The weights file of a local source (a file, or the checkpoint inside an open_clip folder)."""
    path = resolve(source).path
    if source.kind == "file":
        return path
    if not (path / "open_clip_config.json").is_file():
        raise ModelLoadError(f"{path}: not an open_clip model folder (no open_clip_config.json)")
    return _single_checkpoint(path)


def _checkpoints(folder: Path) -> set[Path]:
    return {p for ext in ("*.safetensors", "*.bin", "*.pth") for p in folder.glob(ext)}


def _single_checkpoint(folder: Path) -> Path:
    found = sorted(_checkpoints(folder))
    if not found:
        raise ModelLoadError(f"{folder}: no weights file (*.safetensors, *.bin, *.pth) beside open_clip_config.json")
    preferred = [p for p in found if p.name == "open_clip_model.safetensors"]
    if preferred:
        return preferred[0]  # open_clip's first choice too
    if len(found) > 1:
        # open_clip would pick one by its own order; make the user say which instead of guessing
        raise ModelLoadError(
            f"{folder}: several weights files ({', '.join(p.name for p in found)}); keep one, or name it"
            " open_clip_model.safetensors"
        )
    return found[0]
