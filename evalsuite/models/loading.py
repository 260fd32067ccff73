"""From ``--model`` (and ``--pretrained``) to a model card, and from a card to a loaded adapter."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from ..errors import UserInputError
from ..registry import Registry
from .card import ModelCard, WeightsSource, find_card, load_card_file

ADAPTERS: Registry = Registry("model adapter")
ADAPTERS.register_lazy("open_clip", "evalsuite.models.open_clip_adapter:OpenClipAdapter")


def resolve_card(model: str, pretrained: Optional[str] = None, include_paths=()) -> ModelCard:
    """Accepts a card name, a card .yaml path, ``open_clip:ARCH[/TAG]`` or ``local-dir:FOLDER``."""
    if model.startswith("open_clip:"):
        arch, _, tag = model[len("open_clip:"):].partition("/")
        if not arch:
            raise UserInputError(f"--model {model!r}: expected open_clip:ARCH/TAG or open_clip:ARCH --pretrained FILE")
        if tag and pretrained:
            raise UserInputError(f"--model {model!r} names a pretrained tag; drop the tag or drop --pretrained")
        if not tag and not pretrained:
            raise UserInputError(
                f"--model {model!r} has no weights: add a tag (open_clip:{arch}/TAG) or --pretrained FILE"
            )
        weights = WeightsSource("file", pretrained) if pretrained else WeightsSource("open_clip_tag", tag)
        return ModelCard(name=model, adapter="open_clip", architecture=arch, weights=[weights])
    if model.startswith("local-dir:"):
        folder = model[len("local-dir:"):]
        if pretrained:
            raise UserInputError("--pretrained does not combine with local-dir: (the folder holds the weights)")
        return ModelCard(
            name=f"local-dir:{Path(folder).name}", adapter="open_clip", architecture=model,
            weights=[WeightsSource("local_dir", folder)],
        )
    card = load_card_file(Path(model)) if model.endswith((".yaml", ".yml")) else find_card(model, include_paths)
    if pretrained:
        # the card's local-path override: same architecture and preprocessing, these weights
        card = dataclasses.replace(card, weights=[WeightsSource("file", pretrained)])
    return card


def load_model(card: ModelCard, device: str = "auto", precision: Optional[str] = None):
    """Build the adapter the card names; weights are loaded here, once per run."""
    from .base import resolve_device, resolve_precision

    adapter_cls = ADAPTERS.get(card.adapter)
    dev = resolve_device(device)
    return adapter_cls(card, dev, resolve_precision(card, dev, precision))


def results_dirname(card: ModelCard) -> str:
    """A folder name for a model's results: the card name with path-unsafe characters replaced."""
    return "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in card.name)
