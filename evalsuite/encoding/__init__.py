"""From task inputs to features: the Encoder (encoder.py) with its caches, loaders and back-off.

Importing this package stays torch-free (task types import the request types); ``Encoder`` and
``EncoderSettings`` are imported on first use.
"""

from __future__ import annotations

from .requests import ClassifierRequest, Encoded, EncodedImages, ImageRequest, TaskInputs, TextRequest

__all__ = ["ClassifierRequest", "Encoded", "EncodedImages", "Encoder", "EncoderSettings", "ImageRequest",
           "TaskInputs", "TextRequest"]


def __getattr__(name: str):
    if name in ("Encoder", "EncoderSettings"):
        from . import encoder

        return getattr(encoder, name)
    raise AttributeError(name)
