"""evalsuite: zero-shot evaluation of CLIP models on the EVA-CLIP protocol."""

__version__ = "0.1.0"
