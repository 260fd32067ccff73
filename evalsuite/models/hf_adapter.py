"""Hugging Face transformers models: plain ``CLIPModel`` checkpoints (e.g. ``hf:openai/clip-vit-base-patch32``) and
repos with their own modelling code (e.g. ``hf:BAAI/EVA-CLIP-8B``), the latter only when a model card allows it.

Preprocessing comes from the card when there is one, else from the repo's ``preprocessor_config.json``
(CLIPImageProcessor: shortest-edge resize, centre crop, mean/std), applied with the same transform code as
every other adapter. The authors of EVA-CLIP warn that their HF weights may score differently from the PyTorch
weights the papers used.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelLoadError
from .base import ModelAdapter, file_digest, weight_dtype

log = logging.getLogger(__name__)
_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL resample codes in preprocessor configs


class HfAdapter(ModelAdapter):
    weight_kinds = ("hf_repo",)

    @classmethod
    def weights_identity(cls, card) -> dict:
        source = cls.weights_source(card)
        repo = source.ref
        folder = Path(repo).expanduser()
        if folder.is_dir():
            files = sorted(p for ext in ("*.safetensors", "*.bin") for p in folder.glob(ext))
            if not files:
                raise ModelLoadError(f"{folder}: no weights (*.safetensors, *.bin) in this Hugging Face folder")
            return {"files": {p.name: file_digest(p) for p in files}}
        return {"hf_repo": f"{repo}@{source.revision or 'main'}"}

    def _build(self) -> nn.Module:
        from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPModel

        source = self.weights_source(self.card)
        repo, revision, trust = source.ref, source.revision, self.card.trust_remote_code
        self.dtype = weight_dtype(self.precision)
        try:
            config = AutoConfig.from_pretrained(repo, revision=revision, trust_remote_code=trust)
        except ValueError as exc:
            if "trust_remote_code" in str(exc):
                raise ModelLoadError(
                    f"hf:{repo} needs its own modelling code; evalsuite runs remote code only for models whose card"
                    " says trust_remote_code: true (e.g. --model hf:BAAI/EVA-CLIP-8B is allowed by the EVA-CLIP-8B"
                    " card). Write a card for this repo if you trust it."
                ) from exc
            raise ModelLoadError(f"hf:{repo}: cannot read its config: {exc}") from exc
        except OSError as exc:
            raise ModelLoadError(
                f"hf:{repo}: not found locally or in the Hugging Face cache ({str(exc).splitlines()[0]});"
                " download it (huggingface-cli download REPO) or pass a local folder as hf:/path/to/folder"
            ) from exc
        self.is_clip = config.model_type == "clip"
        if not self.is_clip and not trust:
            raise ModelLoadError(f"hf:{repo} is a {config.model_type!r} model, not a CLIPModel; other kinds load only"
                                 " through a model card that says trust_remote_code: true")
        try:
            if self.is_clip:
                model = CLIPModel.from_pretrained(repo, revision=revision, dtype=self.dtype)
            else:
                model = AutoModel.from_pretrained(repo, revision=revision, dtype=self.dtype, trust_remote_code=trust)
            self._tokenizer = AutoTokenizer.from_pretrained(repo, revision=revision)
        except OSError as exc:
            raise ModelLoadError(f"hf:{repo}: cannot load the model or tokenizer: {exc}") from exc
        self.context_length = getattr(getattr(config, "text_config", config), "max_position_embeddings", 77)
        self._preprocess = self._preprocess_cfg(repo)
        return model.to(self.device)

    def _preprocess_cfg(self, repo: str) -> dict:
        card = self.card
        if card.preprocess is not None:
            p = card.preprocess
            return {"size": card.image_size, "mean": list(p.mean), "std": list(p.std),
                    "interpolation": p.interpolation, "resize_mode": p.resize_mode}
        from transformers.utils import cached_file

        path = cached_file(repo, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
        if path is None:
            raise ModelLoadError(f"hf:{repo} has no preprocessor_config.json; write a model card with preprocess")
        cfg = json.loads(Path(path).read_text())
        crop = cfg.get("crop_size", cfg.get("size"))
        size = crop.get("height", crop.get("shortest_edge")) if isinstance(crop, dict) else crop
        resize_mode = "shortest" if cfg.get("do_center_crop", True) else "squash"
        return {"size": size, "mean": cfg["image_mean"], "std": cfg["image_std"],
                "interpolation": _RESAMPLE.get(cfg.get("resample", 3), "bicubic"), "resize_mode": resize_mode}

    def preprocess_description(self) -> dict:
        return dict(self._preprocess)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        # padded to the full context like open_clip, so pooling at the end-of-text token is unaffected
        return self._tokenizer(texts, padding="max_length", max_length=self.context_length, truncation=True,
                               return_tensors="pt").input_ids

    def _encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(self.dtype)
        out = self.module.get_image_features(pixel_values=pixels) if self.is_clip else self.module.encode_image(pixels)
        return out if torch.is_tensor(out) else out.pooler_output  # transformers 5 returns projected pooler_output

    def _encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.module.get_text_features(input_ids=tokens) if self.is_clip else self.module.encode_text(tokens)
        return out if torch.is_tensor(out) else out.pooler_output
