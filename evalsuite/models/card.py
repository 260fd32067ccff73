"""Model cards: YAML files saying how to build a model, where its weights are, and how to preprocess for it."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..config import from_mapping
from ..errors import ConfigError, UnknownNameError
from ..registry import did_you_mean
from ..resources import card_dirs
from ..yamlio import load_yaml

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]  # OpenAI CLIP normalisation, used by every EVA-CLIP model
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
RESIZE_MODES = ("shortest", "squash")
# precision modes, one meaning for every adapter: fp32; amp_fp16 / amp_bf16 = fp32 weights under autocast
# (CLIP_benchmark's --amp; the residual streams stay fp32); fp16 / bf16 = weights cast (half the memory)
PRECISIONS = ("fp32", "amp_fp16", "amp_bf16", "fp16", "bf16")
CAST_PRECISIONS = ("fp16", "bf16")


@dataclass(frozen=True)
class Preprocess:
    mean: list[float]
    std: list[float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"  # shortest side + centre crop (EVA eval), or squash (direct resize)


WEIGHT_KINDS = ("open_clip_tag", "file", "local_dir", "package_dir", "hf_file", "hf_repo")


@dataclass(frozen=True)
class WeightsSource:
    """One place the weights can come from.

    kinds: open_clip_tag (ref = tag, fetched by open_clip), file (ref = path), local_dir (ref = open_clip folder),
    package_dir (ref = folder inside the package), hf_file (ref = hub repo, filename, revision: one file through
    huggingface_hub's cache), hf_repo (ref = hub repo for transformers' from_pretrained).
    """

    kind: str
    ref: str
    filename: Optional[str] = None
    revision: Optional[str] = None
    notes: str = ""


@dataclass(frozen=True)
class ModelCard:
    name: str
    adapter: str
    architecture: str
    image_size: Optional[int] = None
    preprocess: Optional[Preprocess] = None  # None: the weights' own config (open_clip tags only)
    weights: list[WeightsSource] = field(default_factory=list)
    precision: str = "amp_bf16"  # a PRECISIONS mode, used on CUDA; the CPU runs fp32 unless asked otherwise
    config: Optional[dict] = None  # upstream-format architecture (embed_dim, vision_cfg, text_cfg) for eva_native
    # hf adapter: the card's own hf_repo source may run its modelling code (AutoModel), only at its pinned commit
    trust_remote_code: bool = False
    params_millions: Optional[float] = None
    reference_key: Optional[str] = None
    description: str = ""
    notes: str = ""
    file: str = ""
    # set when the card is read, not from YAML: the hub repo and pinned commit whose code trust_remote_code trusts
    # (the card's hf_repo source; kept when --weights replaces the weights: weights only, never code)
    code_source: Optional[WeightsSource] = None
    # set by resolve_card from --trust-remote-code: the user trusts the code of whatever the weights name
    user_trusts_remote_code: bool = False

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("file")
        return d


def load_card_file(path: Path) -> ModelCard:
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a model card must be a mapping of keys")
    card = from_mapping(ModelCard, data, path, skip=("file", "code_source", "user_trusts_remote_code"))
    if card.precision not in PRECISIONS:
        raise ConfigError(f"{path}:{data.line_of('precision')}: precision must be one of {PRECISIONS}")
    if card.preprocess is not None:
        if card.preprocess.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"{path}: preprocess.resize_mode must be one of {RESIZE_MODES}")
        if len(card.preprocess.mean) != 3 or len(card.preprocess.std) != 3:
            raise ConfigError(f"{path}: preprocess.mean and preprocess.std need 3 values each")
    for w in card.weights:
        if w.kind not in WEIGHT_KINDS:
            raise ConfigError(f"{path}: weights kind {w.kind!r} is not one of {WEIGHT_KINDS}")
        if w.kind == "hf_file" and not w.filename:
            raise ConfigError(f"{path}: an hf_file weights source needs filename")
    if card.preprocess is not None and card.image_size is None:
        raise ConfigError(f"{path}: a card with preprocess needs image_size")
    code_source = _code_source(card, data, path) if card.trust_remote_code else None
    return dataclasses.replace(card, file=str(path), code_source=code_source)


HUB_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


def _code_source(card: ModelCard, data, path: Path) -> WeightsSource:
    """The repo whose code ``trust_remote_code`` trusts: the card's hf_repo source, a hub repo id, at a commit
    hash when it says one (a branch or tag can move, and the code with it). A card without a revision still
    loads (its other sources work), but the hf adapter refuses its remote code (hf_adapter.remote_code_plan)."""
    repos = [(i, w) for i, w in enumerate(card.weights) if w.kind == "hf_repo"]
    if not repos:
        raise ConfigError(f"{path}:{data.line_of('trust_remote_code')}: trust_remote_code: true applies to the"
                          " card's hf_repo weights source (the Hugging Face repo whose modelling code runs, at a"
                          " pinned commit); this card has none")
    index, source = repos[0]
    entry = data["weights"][index]
    line = entry.line_of("ref") if hasattr(entry, "line_of") else data.line_of("weights")
    if not HUB_REPO_ID.fullmatch(source.ref) or source.ref.startswith((".", "~")):
        raise ConfigError(f"{path}:{line}: hf_repo {source.ref!r}: trust_remote_code trusts a Hugging Face repo"
                          " (org/name) at a pinned commit, never a local folder (a folder's code needs"
                          " --trust-remote-code at run time)")
    if source.revision is not None and not COMMIT_HASH.fullmatch(source.revision):
        line = entry.line_of("revision") if hasattr(entry, "line_of") else line
        raise ConfigError(f"{path}:{line}: revision {source.revision!r} of {source.ref}: a card that trusts remote"
                          " code pins a full commit hash (40 lowercase hex digits); a branch or tag can change"
                          " under the card, and the code with it")
    return source


def all_cards(include_paths=()) -> dict[str, ModelCard]:
    cards: dict[str, ModelCard] = {}
    for folder in card_dirs(include_paths):
        for path in sorted(folder.glob("*.yaml")):
            card = load_card_file(path)
            if card.name != path.stem:
                raise ConfigError(f"{path}: card name {card.name!r} must equal the file name stem {path.stem!r}")
            if card.name in cards:
                raise ConfigError(f"{path}: model card {card.name!r} is defined twice (also {cards[card.name].file})")
            cards[card.name] = card
    return cards


def find_card(name: str, include_paths=()) -> ModelCard:
    cards = all_cards(include_paths)
    if name in cards:
        return cards[name]
    raise UnknownNameError(
        f"unknown model {name!r}.{did_you_mean(name, list(cards))} Pass a card name (evalsuite ls models),"
        " a card .yaml path, open_clip:ARCH/TAG, open_clip:ARCH with --weights FILE, local-dir:FOLDER, hf:REPO,"
        " or a checkpoint PATH with --arch"
    )
