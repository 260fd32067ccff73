"""Tiny random-init open_clip models for tests: a real open_clip architecture at toy size, saved as an
open_clip ``local-dir`` folder so tests exercise the same loading path as real weights."""

from __future__ import annotations

import json
from pathlib import Path

from .card import OPENAI_MEAN, OPENAI_STD

TINY_MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_PREPROCESS_CFG = {
    "size": 32,
    "mean": OPENAI_MEAN,
    "std": OPENAI_STD,
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def build_tiny_clip(seed: int = 0):
    import open_clip
    import torch

    torch.manual_seed(seed)
    return open_clip.CLIP(**TINY_MODEL_CFG).eval()


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """Write a random-init tiny CLIP as ``folder/{open_clip_config.json, open_clip_model.safetensors}``."""
    from safetensors.torch import save_file

    model = build_tiny_clip(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_MODEL_CFG, "preprocess_cfg": TINY_PREPROCESS_CFG}, indent=2)
    )
    return folder
