"""Native EVA-CLIP checkpoints (the upstream PyTorch ``.pt`` files), including EVA-CLIP-8B, 8B-448 and 18B,
which neither open_clip nor timm ship.

Built from well-kept parts: timm's ``Eva`` for the vision tower (RMSNorm, no qkv bias, MLP ratio 5, CLS-token
pooling, optional post-norm blocks) with a separate bias-free projection head, and open_clip's
``TextTransformer`` for the text tower. The architecture comes from an upstream-format config (the JSON shape of
EVA's ``model_configs/*.json``: ``embed_dim``, ``vision_cfg``, ``text_cfg``).

Loading is strict (every missing or unexpected key is an error: upstream's ``strict=False`` silently leaves a
mis-laid-out text tower random) and lean: the model is built with its parameters on the meta device, the
checkpoint is memory-mapped, each tensor is cast to the target dtype on its own and its mapped source pages are
released, then the tensors are assigned — peak host memory is about one copy of the weights in the target dtype.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import logging
import mmap
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import from_mapping
from ..errors import ConfigError, ModelLoadError
from .weights import check_weights_file, explain_weights_error

log = logging.getLogger(__name__)

# Upstream config keys that do not change the evaluated function (kernels, training-only settings).
_IGNORED_VISION_KEYS = ("eva_model_name", "drop_path_rate", "xattn", "fusedLN", "grad_checkpointing")
_IGNORED_TEXT_KEYS = ("xattn", "fusedLN")
# Upstream features the native adapter does not build; EVA02 models (which use them) load through open_clip.
_UNSUPPORTED_VISION_KEYS = ("rope", "naiveswiglu", "subln", "pt_hw_seq_len", "intp_freq", "qk_norm",
                            "global_average_pool", "patch_dropout", "ls_init_value")


@dataclass(frozen=True)
class EvaVisionConfig:
    image_size: int
    layers: int
    width: int
    head_width: int
    patch_size: int
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    postnorm: bool = False
    use_rms_norm: bool = False


@dataclass(frozen=True)
class EvaTextConfig:
    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12


@dataclass(frozen=True)
class EvaClipConfig:
    embed_dim: int
    vision: EvaVisionConfig
    text: EvaTextConfig

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "EvaClipConfig":
        if not isinstance(data, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(data):
            raise ConfigError(f"{where}: an EVA-CLIP config needs embed_dim, vision_cfg and text_cfg")
        extra = set(data) - {"embed_dim", "vision_cfg", "text_cfg", "custom_text"}
        if extra:
            raise ConfigError(f"{where}: unknown top-level keys {sorted(extra)} in the EVA-CLIP config")
        vision = dict(data["vision_cfg"])
        text = dict(data["text_cfg"])
        used = sorted(k for k in _UNSUPPORTED_VISION_KEYS if vision.get(k))
        if used:
            raise ConfigError(
                f"{where}: vision_cfg uses {used}, which the native adapter does not build (EVA02 features);"
                " load EVA02 models through their open_clip cards instead (evalsuite ls models)"
            )
        for key in _IGNORED_VISION_KEYS + _UNSUPPORTED_VISION_KEYS:
            vision.pop(key, None)
        for key in _IGNORED_TEXT_KEYS:
            text.pop(key, None)
        if not isinstance(data["embed_dim"], int):
            raise ConfigError(f"{where}: embed_dim must be an integer")
        v = from_mapping(EvaVisionConfig, vision, f"{where} (vision_cfg)")
        if v.width % v.head_width:
            raise ConfigError(f"{where}: vision width {v.width} is not a multiple of head_width {v.head_width}")
        return cls(data["embed_dim"], v, from_mapping(EvaTextConfig, text, f"{where} (text_cfg)"))

    @classmethod
    def from_json(cls, path: Path) -> "EvaClipConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the EVA-CLIP config: {exc}") from exc
        return cls.from_dict(data, str(path))

    def as_dict(self) -> dict:
        return {"embed_dim": self.embed_dim, "vision_cfg": dataclasses.asdict(self.vision),
                "text_cfg": dataclasses.asdict(self.text)}


# ----------------------------------------------------------------------------------------------------------------
# the model


def _vision_tower(cfg: EvaVisionConfig, embed_dim: int) -> nn.Module:
    from timm.layers import LayerNorm, RmsNorm
    from timm.models.eva import Eva

    class EvaVisionTower(Eva):
        """timm's Eva with CLS pooling, no classifier, and the upstream bias-free projection ``head``."""

        def __init__(self) -> None:
            super().__init__(
                img_size=cfg.image_size, patch_size=cfg.patch_size, num_classes=0, global_pool="token",
                embed_dim=cfg.width, depth=cfg.layers, num_heads=cfg.width // cfg.head_width,
                qkv_bias=cfg.qkv_bias, mlp_ratio=cfg.mlp_ratio,
                norm_layer=partial(RmsNorm if cfg.use_rms_norm else LayerNorm, eps=1e-6),
                use_post_norm=cfg.postnorm, use_fc_norm=False,
            )
            self.head = nn.Linear(cfg.width, embed_dim, bias=False)

    return EvaVisionTower()


class EvaClip(nn.Module):
    """State-dict layout of upstream's CustomCLIP: ``visual.*``, ``text.*``, ``logit_scale``."""

    def __init__(self, cfg: EvaClipConfig) -> None:
        super().__init__()
        from open_clip.transformer import TextTransformer

        t = cfg.text
        self.visual = _vision_tower(cfg.vision, cfg.embed_dim)
        self.text = TextTransformer(context_length=t.context_length, vocab_size=t.vocab_size, width=t.width,
                                    heads=t.heads, layers=t.layers, output_dim=cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.ones([]))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens)


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create parameters on the meta device (no memory, no init cost); buffers stay real (causal masks etc.).

    Written here rather than taken from accelerate (``init_empty_weights(include_buffers=False)``) to avoid a
    dependency for ten lines.
    """
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: Optional[nn.Parameter]) -> None:
        original(module, name, param)
        if param is not None:
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def build_eva_clip(cfg: EvaClipConfig, meta: bool = True) -> EvaClip:
    with parameters_on_meta() if meta else contextlib.nullcontext():
        return EvaClip(cfg).eval()


# ----------------------------------------------------------------------------------------------------------------
# reading checkpoints

_CONTAINERS = ("state_dict", "model", "module")
_TEXT_TOP_LEVEL = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


def _unwrap(obj, path: Path) -> dict:
    """Find the state dict inside ``{'model': ...}``/``{'module': ...}``/``{'state_dict': ...}`` containers."""
    for _ in range(3):
        if isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
            inner = next((obj[k] for k in _CONTAINERS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise ModelLoadError(f"{path}: no state dict found (expected tensors, possibly under 'model', 'module'"
                             " or 'state_dict')")
    return obj


def normalise_keys(keys: list[str]) -> dict[str, str]:
    """Checkpoint key -> model key: strip ``module.``, and move a top-level text tower under ``text.``."""
    mapping = {}
    for key in keys:
        new = key[len("module."):] if key.startswith("module.") else key
        if new.startswith(_TEXT_TOP_LEVEL):
            new = "text." + new
        mapping[key] = new
    return mapping


# the dtypes a weights file may hold: the floating-point ones a model is trained and published in. fp8, integer,
# unsigned and bool tensors would be cast into other numbers without a word (a quantised checkpoint needs its
# scales), so a file holding one is refused, naming the tensor
_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
WEIGHT_DTYPES = tuple(_ST_DTYPES.values())


def _dtype_error(path: Path, key: str, dtype) -> ModelLoadError:
    return ModelLoadError(f"{path}: tensor {key!r} is stored as {dtype}; the native loader reads floating-point"
                          f" weights ({', '.join(_ST_DTYPES)}) only: fp8, integer and bool tensors would be cast"
                          " into other numbers")


class _SafetensorsReader:
    """Reads one tensor at a time with plain file reads.

    safetensors' own ``safe_open`` memory-maps the file and the pages it touches stay resident, which would
    double the peak memory of a large load; the format (8-byte header length, JSON header, raw data) is simple
    enough to read directly, and ``safe_open`` still validates the header first.
    """

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu"):  # validates the file
            pass
        self.path = path
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        for key, entry in header.items():
            if entry.get("dtype") not in _ST_DTYPES:
                raise _dtype_error(path, key, entry.get("dtype"))
        self.data_start = 8 + size
        self.entries = header

    def keys(self) -> list[str]:
        return list(self.entries)

    def get_tensor(self, key: str) -> torch.Tensor:
        entry = self.entries[key]
        start, end = entry["data_offsets"]
        buf = bytearray(end - start)
        with self.path.open("rb") as f:
            f.seek(self.data_start + start)
            f.readinto(buf)
        dtype = _ST_DTYPES[entry["dtype"]]
        if not buf:
            return torch.empty(entry["shape"], dtype=dtype)
        return torch.frombuffer(buf, dtype=dtype).reshape(entry["shape"])


class _Checkpoint:
    """Lazy access to a ``.pt``/``.pth``/``.bin`` (memory-mapped) or ``.safetensors`` (read per tensor) file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        check_weights_file(path)  # empty, truncated, not a checkpoint: one line naming the file, before any read
        if path.suffix == ".safetensors":
            try:
                self._st = _SafetensorsReader(path)
            except ModelLoadError:
                raise
            except Exception as exc:  # noqa: BLE001 - header and I/O errors all mean an unreadable file
                raise _read_error(path, exc) from exc
            self._tensors = None
            keys = self._st.keys()
        else:
            self._st = None
            try:
                try:
                    obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
                except RuntimeError as exc:
                    if "mmap can only be used" not in str(exc):
                        raise
                    # legacy (non-zip) serialisation cannot be memory-mapped: read it whole, say so
                    log.warning("%s: legacy format, cannot be memory-mapped; reading it whole (more host memory)",
                                path)
                    obj = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - pickle, zip and I/O errors vary; all mean an unreadable file
                raise _read_error(path, exc) from exc
            self._tensors = _unwrap(obj, path)
            keys = list(self._tensors)
        self.key_map = normalise_keys(keys)

    def take(self, key: str) -> torch.Tensor:
        if self._st is not None:
            return self._st.get_tensor(key)
        return self._tensors.pop(key)


def _read_error(path: Path, exc: Exception) -> ModelLoadError:
    reason = explain_weights_error(path, exc)
    first = " ".join(str(exc).split())[:200] or type(exc).__name__
    return ModelLoadError(reason or f"{path}: cannot read the checkpoint ({type(exc).__name__}: {first})")


_MADV_DONTNEED = 4


def _release_pages(t: torch.Tensor) -> None:
    """Drop a memory-mapped tensor's pages from this process (Linux). Only for file-backed mappings: the pages
    are re-read from the file if touched again, so nothing is lost."""
    if not sys.platform.startswith("linux"):
        return
    start, size = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
    page = mmap.PAGESIZE
    first, last = (start + page - 1) // page * page, (start + size) // page * page  # whole pages only
    if last > first:
        ctypes.CDLL(None).madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)


def resize_pos_embed(pos_embed: torch.Tensor, num_patches: int) -> torch.Tensor:
    """(1, 1 + g*g, C) -> (1, 1 + n, C): CLS kept, the grid resized bicubically (align_corners=False, no
    antialias), as upstream's interpolate_pos_embed does."""
    cls, grid = pos_embed[:, :1], pos_embed[:, 1:]
    old, new = int(round(grid.shape[1] ** 0.5)), int(round(num_patches ** 0.5))
    if old * old != grid.shape[1] or new * new != num_patches:
        raise ModelLoadError(f"pos_embed grid {grid.shape[1]} -> {num_patches} is not square to square")
    dtype = grid.dtype
    grid = grid.float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new * new, -1).to(dtype)
    return torch.cat([cls.to(dtype), grid], dim=1)


def load_native_weights(model: EvaClip, path: Path, dtype: torch.dtype) -> list[str]:
    """Load ``path`` into a meta-built ``model`` strictly, casting to ``dtype`` tensor by tensor.

    Returns notes about conversions (layout, pos_embed resize) for the log and run manifest.
    """
    ckpt = _Checkpoint(path)
    expected = {k: v for k, v in model.state_dict().items()}
    param_keys = {k for k, _ in model.named_parameters()}
    wanted = {k for k in expected if k in param_keys}
    by_model_key: dict[str, str] = {}
    for src, dst in ckpt.key_map.items():
        if dst in by_model_key:
            raise ModelLoadError(f"{path}: keys {by_model_key[dst]!r} and {src!r} both map to {dst!r}")
        by_model_key[dst] = src
    missing = sorted(wanted - set(by_model_key))
    unexpected = sorted(src for src, dst in ckpt.key_map.items() if dst not in wanted)
    if missing or unexpected:
        raise ModelLoadError(
            f"{path}: checkpoint does not match the architecture —"
            f" {len(missing)} missing key(s){': ' + ', '.join(missing[:10]) if missing else ''}"
            f"{' ...' if len(missing) > 10 else ''};"
            f" {len(unexpected)} unexpected key(s){': ' + ', '.join(unexpected[:10]) if unexpected else ''}"
            f"{' ...' if len(unexpected) > 10 else ''}"
        )
    notes = []
    if any(s != d for s, d in ckpt.key_map.items()):
        notes.append("checkpoint keys normalised (module. prefix and/or top-level text tower moved under text.)")
    converted: dict[str, torch.Tensor] = {}
    for dst in sorted(wanted):
        src_tensor = ckpt.take(by_model_key[dst])
        if src_tensor.dtype not in WEIGHT_DTYPES:
            raise _dtype_error(path, by_model_key[dst], src_tensor.dtype)
        want_shape = tuple(expected[dst].shape)
        tensor = src_tensor
        if dst == "visual.pos_embed" and tuple(tensor.shape) != want_shape:
            tensor = resize_pos_embed(tensor, want_shape[1] - 1)
            notes.append(f"visual.pos_embed resized from {tuple(src_tensor.shape)} to {want_shape}"
                         " (CLS kept, bicubic, align_corners=False)")
        if tuple(tensor.shape) != want_shape:
            raise ModelLoadError(f"{path}: {by_model_key[dst]} has shape {tuple(tensor.shape)}, the architecture"
                                 f" needs {want_shape}")
        converted[dst] = tensor.to(dtype=dtype, copy=True).contiguous()
        if ckpt._st is None:
            _release_pages(src_tensor)
        del src_tensor, tensor
    model.load_state_dict(converted, strict=False, assign=True)
    still_meta = [k for k, p in model.named_parameters() if p.is_meta]
    if still_meta:  # cannot happen after the key check above; guard against silent random weights anyway
        raise ModelLoadError(f"{path}: parameters left unloaded: {still_meta[:10]}")
    for note in notes:
        log.info("%s: %s", path.name, note)
    return notes


# ----------------------------------------------------------------------------------------------------------------
# the adapter

from .base import ModelAdapter, file_digest, weight_dtype  # noqa: E402 (kept beside its only user)
from .weights import hf_file_commit, resolve  # noqa: E402


def card_config(card) -> EvaClipConfig:
    if card.config is None:
        raise ConfigError(f"model card {card.name!r} ({card.file}) has no 'config' (the upstream-format"
                          " architecture the eva_native adapter builds)")
    return EvaClipConfig.from_dict(card.config, card.file or card.name)


class EvaNativeAdapter(ModelAdapter):
    weight_kinds = ("file", "hf_file")

    @classmethod
    def weights_identity(cls, card) -> dict:
        source = cls.weights_source(card)
        if source.kind == "file":
            return {"file_sha256": file_digest(resolve(source).path)}
        # a hub file is identified by repo, name and the commit its revision names (no 30 GB download to hash
        # it); the load reads the file at that very commit
        return {"hf_file": f"{source.ref}/{source.filename}@{hf_file_commit(source)}"}

    def _build(self) -> nn.Module:
        cfg = card_config(self.card)
        self.weights = resolve(self.weights_source(self.card))
        # streamed into the mode's weight dtype: peak host memory about one fp32 copy for fp32 and the amp modes,
        # one half copy for the cast modes
        self.dtype = weight_dtype(self.precision)
        model = build_eva_clip(cfg, meta=True)
        self.load_notes = load_native_weights(model, self.weights.path, self.dtype)
        self.context_length = cfg.text.context_length
        return model.to(self.device)

    def preprocess_description(self) -> dict:
        return {"size": self.card.image_size, **dataclasses.asdict(self.card.preprocess)}

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        import open_clip

        return open_clip.tokenize(texts, context_length=self.context_length)

    def _encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(pixels.to(self.dtype))

    def _encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.module.encode_text(tokens)

    def _text_tower(self):
        return self.module.text
