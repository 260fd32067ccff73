"""ModelAdapter: the one interface the runner talks to.

The base class owns everything an adapter must not forget: eval mode, inference mode, autocast on CUDA,
fp32 on CPU, device placement and L2 normalisation of the features.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Collection, Optional

import torch
import torch.nn.functional as F

from ..errors import NonFiniteFeaturesError, UserInputError
from .card import PRECISIONS, ModelCard

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
"""The one precision-name -> torch dtype map. Every mode of ``card.PRECISIONS`` is a name here (``fp32``, the cast
modes ``fp16``/``bf16``) or ``amp_`` + one (autocast to it over fp32 weights)."""
MODE_OF_DTYPE = {dtype: name for name, dtype in DTYPES.items()}


def weight_dtype(precision: str) -> torch.dtype:
    """The dtype the weights are held in: half for the cast modes, fp32 for fp32 and the autocast modes."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return torch.float32 if precision.startswith("amp_") else DTYPES[precision]


def autocast_dtype(precision: str) -> Optional[torch.dtype]:
    """The autocast dtype of an ``amp_*`` mode, None otherwise."""
    return DTYPES[precision[4:]] if precision.startswith("amp_") else None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserInputError(f"--device {device!r}: expected cpu, cuda, cuda:N or auto")
    return torch.device(device)


def resolve_precision(card: ModelCard, device: torch.device, requested: str | None) -> str:
    """CUDA: the flag, else the card's mode. CPU: fp32 unless explicitly asked (bf16 is 5-14x slower there)."""
    if requested is not None and requested not in PRECISIONS:
        raise UserInputError(f"--precision {requested!r}: expected one of {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        if requested not in (None, "fp32"):
            log.warning("precision %s on CPU: much slower than fp32 on CPUs without native half-precision support"
                        " (the default on CPU is fp32)", requested)
        return requested or "fp32"
    return requested or card.precision


DIGEST_MEMO_MIN_BYTES = 64 << 20  # smaller files hash in well under a second each run: no memo entry for them
_READ_CHUNK = 1 << 24


@dataclasses.dataclass(frozen=True)
class FileVersion:
    """What tells one version of a file from another without reading it (ctime_ns: an in-place edit whose mtime
    was set back still moves it)."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int


def file_digest(path: Path) -> str:
    """sha256 (16 hex digits) of a file's size and whole contents: weights, configs, tokenizer files.

    Every byte counts: two checkpoints that differ only in middle blocks (a partial fine-tune) must not share a
    fingerprint. A large file is hashed once per version of it: the digest is memoised under
    ``$EVALSUITE_CACHE_DIR/digests``, keyed by the resolved path, size, mtime_ns, ctime_ns and inode, so an
    edited or replaced file is hashed again.
    """
    path = Path(path).resolve()
    st = path.stat()
    return _digest(FileVersion(str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev))


@functools.lru_cache(maxsize=256)
def _digest(version: FileVersion) -> str:
    """In-process memo too: a run asks for its weights' digest more than once (results folder, fingerprint)."""
    if version.size < DIGEST_MEMO_MIN_BYTES:
        return _hash_file(version)
    memo = _memo_path(version)
    known = _read_memo(memo, version)
    if known is not None:
        return known
    if version.size >= 1 << 30:
        log.info("hashing %s (%.1f GB) for the model fingerprint; done once, then read from %s", version.path,
                 version.size / 1e9, memo.parent)
    digest = _hash_file(version)
    _write_memo(memo, version, digest)
    return digest


def _hash_file(version: FileVersion) -> str:
    # size, then contents: what the digest of a file under 256 MiB always was, so those fingerprints stay valid
    h = hashlib.sha256(str(version.size).encode())
    buf = bytearray(_READ_CHUNK)
    view = memoryview(buf)
    with open(version.path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()[:16]


def _memo_path(version: FileVersion) -> Path:
    from ..resources import default_cache_dir

    key = hashlib.sha256(json.dumps(dataclasses.asdict(version), sort_keys=True).encode()).hexdigest()[:32]
    return default_cache_dir() / "digests" / f"{key}.json"


def _read_memo(memo: Path, version: FileVersion) -> Optional[str]:
    """The memoised digest of exactly this file version; None when absent, damaged or of another version."""
    try:
        entry = json.loads(memo.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("digest memo %s unreadable (%s); hashing the file again", memo, exc)
        return None
    if not isinstance(entry, dict) or entry.get("file") != dataclasses.asdict(version):
        return None
    digest = entry.get("sha256")
    return digest if isinstance(digest, str) and len(digest) == 16 else None


def _write_memo(memo: Path, version: FileVersion, digest: str) -> None:
    from ..atomic import atomic_write_bytes

    entry = {"file": dataclasses.asdict(version), "sha256": digest}
    try:
        atomic_write_bytes(memo, json.dumps(entry, sort_keys=True).encode())
    except OSError as exc:  # the digest is right either way; only the next run's cost is at stake
        log.warning("cannot memoise the digest of %s in %s (%s): the next run hashes it again", version.path,
                    memo.parent, exc.strerror or exc)


def folder_digests(folder: Path, unread: Collection[Path] = ()) -> dict[str, str]:
    """File name -> digest of every regular file at the top of a model folder except hidden ones and ``unread``:
    its weights and everything a loader may read beside them (model and preprocessing config, tokenizer
    vocabularies, remote code). A README is hashed too: cheaper than missing a file some tokenizer reads."""
    skip = {p.resolve() for p in unread}
    files = sorted(p for p in Path(folder).iterdir()
                   if not p.name.startswith(".") and p.is_file() and p.resolve() not in skip)
    return {p.name: file_digest(p) for p in files}


class ModelAdapter(ABC):
    """Subclasses set ``weight_kinds`` and implement ``_build``, ``_encode_image``, ``_encode_text``, ``tokenize``,
    ``preprocess_description``
    and ``weights_identity``; callers use ``encode_image`` / ``encode_text``, which return float32,
    L2-normalised features on the model's device."""

    weight_kinds: tuple[str, ...] = ()  # the card weight-source kinds this adapter can load

    @classmethod
    def weights_source(cls, card: ModelCard):
        """The card's source this adapter uses (local copies win; see models/weights.py)."""
        from .weights import pick_source

        return pick_source(card, cls.weight_kinds)

    @classmethod
    def describe_weights(cls, card: ModelCard) -> str:
        """``kind:ref[/filename]`` of the weights used, for result rows and run.json."""
        source = cls.weights_source(card)
        return f"{source.kind}:{source.ref}" + (f"/{source.filename}" if source.filename else "")

    def __init__(self, card: ModelCard, device: torch.device, precision: str) -> None:
        self.card = card
        self.device = device
        self.precision = precision
        self.module: torch.nn.Module = self._build()
        self._cast_to_precision()
        self.module.eval()
        self.module.requires_grad_(False)
        self.channels_last = device.type == "cuda" and _has_conv_stages(self.module)
        if self.channels_last:  # convolutional towers (ConvNeXt, ResNet) run faster in NHWC on CUDA
            self.module.to(memory_format=torch.channels_last)
        self.truncate_text = False
        self.truncate_text = self._truncation_is_exact()

    # --- to implement -----------------------------------------------------------------------------------------
    @abstractmethod
    def _build(self) -> torch.nn.Module:
        """Create the model with its weights loaded, on ``self.device``."""

    @abstractmethod
    def _encode_image(self, pixels: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _encode_text(self, tokens: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def tokenize(self, texts: list[str]) -> torch.Tensor: ...

    @classmethod
    @abstractmethod
    def weights_identity(cls, card: ModelCard) -> dict:
        """What identifies the card's weights (a tag, a file digest), computed without loading them."""

    @abstractmethod
    def preprocess_description(self) -> dict:
        """The effective preprocessing: size, mean, std, interpolation, resize_mode (from the card, else the
        weights' own config). Recorded in run.json."""

    def image_transform(self, resize_mode: str | None = None) -> Callable:
        """PIL image -> normalised float tensor as the card prescribes; ``resize_mode`` (shortest | squash)
        overrides the card's resize for ``--transform``."""
        import open_clip

        p = self.preprocess_description()
        return open_clip.image_transform(p["size"], is_train=False, mean=tuple(p["mean"]), std=tuple(p["std"]),
                                         resize_mode=resize_mode or p["resize_mode"],
                                         interpolation=p["interpolation"])

    def pixel_spec(self, resize_mode: str | None = None, decoder: str = "pil"):
        """What the uint8 pixels of this model depend on (size, resize, interpolation, decoder)."""
        from ..data.pixels import PixelSpec

        try:
            return PixelSpec.from_preprocess(self.preprocess_description(), resize_mode, decoder)
        except UserInputError as exc:
            raise UserInputError(f"model {self.name}: {exc}") from None

    def pixel_transform(self, resize_mode: str | None = None, decoder: str = "pil") -> Callable:
        """PIL image or image file -> uint8 pixels at the input size; ``encode_image`` normalises them on the
        device. With ``decoder="pil"`` this plus that normalisation equals ``image_transform`` bit for bit."""
        from ..data.pixels import UInt8Pixels

        return UInt8Pixels(self.pixel_spec(resize_mode, decoder))

    # --- owned by the base class -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.card.name

    @property
    def precision_mode(self) -> str:
        """What the numbers were computed in, as recorded in ``protocol``: ``fp32``; ``amp_fp16``/``amp_bf16``
        (fp32 weights under autocast, CLIP_benchmark's ``--amp``); ``fp16``/``bf16`` (weights cast)."""
        return self.precision

    @property
    def weight_dtype(self) -> torch.dtype:
        return weight_dtype(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for the ``amp_*`` modes (on the model's device: CUDA, or a CPU when asked); the cast modes
        run in their weights' dtype, fp32 runs as it is."""
        dtype = autocast_dtype(self.precision)
        if dtype is not None:
            return torch.autocast(self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    def _cast_to_precision(self) -> None:
        """Hold the weights in the mode's dtype (cast modes: half; otherwise fp32), and check it took."""
        dtype = self.weight_dtype
        self.module.to(dtype)
        wrong = sorted({str(p.dtype) for p in self.module.parameters() if p.is_floating_point() and p.dtype != dtype})
        if wrong:
            raise UserInputError(f"model {self.name}: precision {self.precision} wants {dtype} weights, but some stay"
                                 f" {', '.join(wrong)}")

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised float pixels (``image_transform``), or uint8 pixels (``pixel_transform``), which are
        converted and normalised here, on the device."""
        pixels = pixels.to(self.device, non_blocking=True)
        if pixels.dtype == torch.uint8:
            from ..data.pixels import normalize_on_device

            p = self.preprocess_description()
            pixels = normalize_on_device(pixels, p["mean"], p["std"])
        pixels = pixels.to(self.weight_dtype)  # cast modes take half inputs; autocast modes cast per op
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self.autocast():
            features = self._encode_image(pixels)
        return self._checked(features, "image")

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        from .text_truncation import trim_padding, truncated_text_features

        with torch.inference_mode(), self.autocast():
            if self.truncate_text:
                tokens = trim_padding(tokens).to(self.device, non_blocking=True)
                features = truncated_text_features(self._text_tower(), tokens)
            else:
                features = self._encode_text(tokens.to(self.device, non_blocking=True))
        return self._checked(features, "text")

    def _checked(self, features: torch.Tensor, tower: str) -> torch.Tensor:
        """L2-normalised float32 features; NaN or inf anywhere is an error, never a plausible-looking score
        (NaN features give every sample the same ranking and a chance-level number)."""
        features = features.float()
        bad = ~torch.isfinite(features).all(dim=-1)
        if bool(bad.any()):
            raise NonFiniteFeaturesError(
                f"model {self.name}: the {tower} tower produced NaN/inf features for {int(bad.sum())} of"
                f" {len(features)} inputs in precision {self.precision_mode} on {self.device}; the weights may be"
                " broken, or half precision overflowed (try --precision fp32 or bf16)")
        return F.normalize(features, dim=-1)

    def _text_tower(self) -> Optional[torch.nn.Module]:
        """The open_clip-style text tower, for prompt truncation; None where it does not apply."""
        return None

    def _truncation_is_exact(self) -> bool:
        """Enable truncated text encoding only if it reproduces the full-context features on probe prompts."""
        from .text_truncation import can_truncate

        if not can_truncate(self._text_tower()):
            return False
        probe = self.tokenize(["a photo of a cat.", "a blurry photo of the great white shark, a type of fish.", "x"])
        full = self.encode_text(probe)
        self.truncate_text = True
        try:
            short = self.encode_text(probe)
        finally:
            self.truncate_text = False
        tolerance = 1e-4 if self.precision == "fp32" else 5e-3
        diff = (full - short).abs().max().item()
        if diff > tolerance:
            log.warning("%s: truncated text encoding differs by %.2g from the full context; not used", self.name,
                        diff)
            return False
        log.debug("%s: prompts encoded at their batch's longest length (max feature diff %.2g)", self.name, diff)
        return True

    def fingerprint(self) -> str:
        return model_fingerprint(type(self), self.card, self.precision)


def _has_conv_stages(module: torch.nn.Module) -> bool:
    """More than a patch-embedding convolution: a ViT (one Conv2d) gains nothing from channels_last."""
    return sum(isinstance(m, torch.nn.Conv2d) for m in module.modules()) > 1


def model_fingerprint(adapter_cls: type[ModelAdapter], card: ModelCard, precision: str) -> str:
    """Identity of the numbers a model produces: architecture, weights, card preprocessing and precision.

    Computable before the weights are loaded, so a resumed run whose tasks are all done loads nothing.
    """
    payload = {
        "adapter": card.adapter,
        "architecture": card.architecture,
        "weights": adapter_cls.weights_identity(card),
        "image_size": card.image_size,
        "preprocess": dataclasses.asdict(card.preprocess) if card.preprocess else None,
        "precision": precision,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
