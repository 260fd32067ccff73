"""evalsuite: zero-shot evaluation of CLIP models on the EVA-CLIP protocol.

Python API (importing evalsuite does not import torch):
    model = evalsuite.load_model("EVA-CLIP-8B", device="cuda")
    model = evalsuite.load_model("/ckpt/EVA_CLIP_8B_psz14_s9B.pt", arch="EVA-CLIP-8B")
    model = evalsuite.load_model("/ckpt/custom.pt", arch="/cfg/custom.json")  # upstream-format config
    feats = model.encode_image(pixels)  # L2-normalised float32; pixels from model.image_transform() (float,
                                        # open_clip's) or model.pixel_transform() (uint8, normalised on device)
    results = evalsuite.evaluate("EVA02-CLIP-B-16", tasks="eva_cls27", data_root="/data")   # or a model object:
    results = evalsuite.evaluate(model, tasks="cifar10", preprocess=preprocess, tokenizer=tokenizer)
    frame = evalsuite.load_results("results")  # pandas: one row per model x task x metric
"""

from __future__ import annotations

from typing import Optional

__version__ = "0.1.0"

# the Python API, imported on first use (``import evalsuite`` stays free of torch, pandas and YAML)
_API = {"evaluate": "api", "Results": "api", "Preprocessing": "api", "ClipModel": "api", "load_results": "tidy"}
__all__ = ["load_model", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'evalsuite' has no attribute {name!r}")


def load_model(name_or_path: str, *, arch: Optional[str] = None, device: str = "cpu",
               precision: Optional[str] = None, weights: Optional[str] = None, include_paths=()):
    """Load a model as a ``ModelAdapter``.

    ``name_or_path``: a card name, card .yaml, ``open_clip:ARCH/TAG``, ``local-dir:FOLDER``, ``hf:REPO`` or a
    checkpoint path (then ``arch`` is a card name or an upstream-format config JSON). ``precision`` defaults to
    the card's on CUDA and fp32 on CPU.
    """
    from .models.loading import load_model as _load
    from .models.loading import resolve_card

    return _load(resolve_card(name_or_path, weights, include_paths, arch=arch), device=device, precision=precision)
