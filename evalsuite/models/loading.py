"""From ``--model`` (with ``--weights``/``--arch``) to a model card, and from a card to a loaded adapter."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Optional

from ..errors import UserInputError
from ..registry import Registry
from .card import OPENAI_MEAN, OPENAI_STD, ModelCard, Preprocess, WeightsSource, find_card, load_card_file

ADAPTERS: Registry = Registry("model adapter")
ADAPTERS.register_lazy("open_clip", "evalsuite.models.open_clip_adapter:OpenClipAdapter")
ADAPTERS.register_lazy("eva_native", "evalsuite.models.eva_native:EvaNativeAdapter")
ADAPTERS.register_lazy("hf", "evalsuite.models.hf_adapter:HfAdapter")

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
MODEL_FORMS = ("a card name (evalsuite ls models), a card .yaml, open_clip:ARCH/TAG, open_clip:ARCH with --weights"
               " FILE, local-dir:FOLDER, hf:REPO, or a checkpoint PATH with --arch CARD|CONFIG.json")


def resolve_card(model: str, weights: Optional[str] = None, include_paths=(), arch: Optional[str] = None,
                 trust_remote_code: bool = False) -> ModelCard:
    """The card for ``--model`` (with ``--weights``/``--arch``); ``trust_remote_code`` is the user's
    ``--trust-remote-code``: the code of whatever folder or repo the weights name may run (hf adapter)."""
    card = _resolve_card(model, weights, include_paths, arch)
    return dataclasses.replace(card, user_trusts_remote_code=True) if trust_remote_code else card


def _resolve_card(model: str, weights: Optional[str], include_paths, arch: Optional[str]) -> ModelCard:
    if arch and not model.endswith(CHECKPOINT_SUFFIXES):
        raise UserInputError(f"--arch goes with a checkpoint path (--model PATH.pt); got --model {model!r}")
    if model.startswith("open_clip:"):
        return _open_clip_card(model, weights)
    if model.startswith("local-dir:"):
        if weights:
            raise UserInputError("--weights does not combine with local-dir: (the folder holds the weights)")
        folder = model[len("local-dir:"):]
        return ModelCard(name=f"local-dir:{Path(folder).name}", adapter="open_clip", architecture=model,
                         weights=[WeightsSource("local_dir", folder)])
    if model.startswith("hf:"):
        return _hf_card(model[len("hf:"):], weights, include_paths)
    if model.endswith(CHECKPOINT_SUFFIXES):
        return _checkpoint_card(model, arch, include_paths)
    card = load_card_file(Path(model)) if model.endswith((".yaml", ".yml")) else find_card(model, include_paths)
    if weights:
        return with_local_weights(card, weights)
    return card


def with_local_weights(card: ModelCard, path: str) -> ModelCard:
    """The card's local-path override: same architecture and preprocessing, these weights (the weights only: a
    card's trusted code stays the card's pinned commit, ``code_source``)."""
    if card.adapter == "hf":
        return dataclasses.replace(card, weights=[WeightsSource("hf_repo", path, notes="--weights override")])
    if any(w.kind in ("package_dir", "local_dir") for w in card.weights):
        raise UserInputError(f"model {card.name!r} is an open_clip folder; --weights cannot replace it")
    return dataclasses.replace(card, weights=[WeightsSource("file", path, notes="--weights override")])


def _hf_card(repo: str, weights: Optional[str], include_paths) -> ModelCard:
    """``hf:REPO``. A card that lists this repo (kind hf_repo) lends its preprocessing and its trust_remote_code
    permission (for that repo at the card's pinned commit: ``code_source``); without one, only plain CLIPModel
    repos load. A Hugging Face cache snapshot folder (``models--ORG--NAME/snapshots/<commit>``) stands for
    ORG/NAME; whether it is the pinned commit's exact copy is checked when the model loads."""
    from .card import all_cards
    from .weights import hf_snapshot_of

    snapshot = hf_snapshot_of(Path(repo)) if Path(repo).expanduser().is_dir() else None
    hub_id = snapshot[0] if snapshot else repo
    for card in all_cards(include_paths).values():
        source = next((w for w in card.weights if w.kind == "hf_repo" and w.ref == hub_id), None)
        if source is not None:
            if weights or snapshot:
                source = WeightsSource("hf_repo", weights or repo, notes="--weights override" if weights else "")
            return dataclasses.replace(card, name=f"hf:{hub_id}", adapter="hf", architecture=hub_id,
                                       weights=[source])
    return ModelCard(name=f"hf:{Path(repo).name if Path(repo).is_dir() else repo}", adapter="hf", architecture=repo,
                     weights=[WeightsSource("hf_repo", weights or repo)])


def _open_clip_card(model: str, weights: Optional[str]) -> ModelCard:
    arch, _, tag = model[len("open_clip:"):].partition("/")
    if not arch:
        raise UserInputError(f"--model {model!r}: expected open_clip:ARCH/TAG or open_clip:ARCH --weights FILE")
    if tag and weights:
        raise UserInputError(f"--model {model!r} names a pretrained tag; drop the tag or drop --weights")
    if not tag and not weights:
        raise UserInputError(f"--model {model!r} has no weights: add a tag (open_clip:{arch}/TAG) or --weights FILE")
    source = WeightsSource("file", weights) if weights else WeightsSource("open_clip_tag", tag)
    return ModelCard(name=model, adapter="open_clip", architecture=arch, weights=[source])


def _checkpoint_card(path: str, arch: Optional[str], include_paths) -> ModelCard:
    """``--model PATH.pt --arch CARD|CONFIG.json``: a native checkpoint with a card's or a config's architecture."""
    if not arch:
        raise UserInputError(f"--model {path}: a checkpoint file needs --arch CARD (e.g. EVA-CLIP-8B) or"
                             " --arch CONFIG.json (upstream EVA-CLIP model config)")
    if not Path(path).is_file():
        raise UserInputError(f"--model {path}: no such file")
    if arch.endswith(".json"):
        from .eva_native import EvaClipConfig

        cfg = EvaClipConfig.from_json(Path(arch))
        return ModelCard(
            name=Path(path).stem, adapter="eva_native", architecture=f"config:{Path(arch).name}",
            image_size=cfg.vision.image_size, preprocess=Preprocess(OPENAI_MEAN, OPENAI_STD),
            weights=[WeightsSource("file", path)], config=cfg.as_dict(),
            notes="built from an upstream-format config; preprocessing: OpenAI mean/std, bicubic, shortest side",
        )
    card = load_card_file(Path(arch)) if arch.endswith((".yaml", ".yml")) else find_card(arch, include_paths)
    return dataclasses.replace(with_local_weights(card, path), name=Path(path).stem)


def load_model(card: ModelCard, device: str = "auto", precision: Optional[str] = None):
    """Build the adapter the card names; weights are loaded here, once per run."""
    from .base import resolve_device, resolve_precision

    adapter_cls = ADAPTERS.get(card.adapter)
    dev = resolve_device(device)
    return adapter_cls(card, dev, resolve_precision(card, dev, precision))


HUB_KINDS = ("hf_file", "open_clip_tag", "package_dir")  # weights a card names by hub identity, not a local path


def has_canonical_weights(card: ModelCard) -> bool:
    """The card's own published weights (hub files, open_clip tags, the packaged demo), as opposed to a local
    file or folder standing in for them (--weights, local-dir:, a checkpoint path, hf:FOLDER)."""
    return all(w.kind in HUB_KINDS or (w.kind == "hf_repo" and not Path(w.ref).expanduser().exists())
               for w in card.weights)


MAX_DIRNAME = 96


def results_dirname(card: ModelCard, weights_identity: Optional[dict] = None) -> str:
    """A folder name for a model's results: the card name with path-unsafe characters replaced, plus 8 hex digits
    of the weights identity when the weights are not the card's canonical ones, so two checkpoints of one
    architecture (``--weights a.pt`` / ``b.pt``, two ``local-dir:`` folders with one basename) never share one.
    Always one plain folder name inside the output folder: no separators, no leading dot (``..``, ``.hidden``),
    never empty, at most MAX_DIRNAME + 9 characters."""
    name = "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in card.name).lstrip(".") or "model"
    if len(name) > MAX_DIRNAME:  # a file name has at most 255 bytes; the weights digest and suffixes need room
        name = name[:MAX_DIRNAME - 9] + "-" + hashlib.sha256(card.name.encode()).hexdigest()[:8]
    if weights_identity is not None and not has_canonical_weights(card):
        digest = hashlib.sha256(json.dumps(weights_identity, sort_keys=True).encode()).hexdigest()[:8]
        name += f"-{digest}"
    return name
