"""Models the caller already holds (the Python API's ``evalsuite.evaluate(model, ...)``): an open_clip model, a
transformers ``CLIPModel``, or any ``torch.nn.Module`` with ``encode_image``/``encode_text``.

The adapter never changes the user's model for good: no dtype cast, no move to another device; the train/eval
flags, ``requires_grad`` and memory format that the base class sets for inference are put back by ``restore()``.
Its identity has three parts, all exact and computed without a forward pass: a sha256 of the state dict (every
tensor's name, dtype, shape and bytes in key order), so two checkpoints of one architecture are different models;
a sha256 of its structure (each submodule's class and plain attributes, and the non-persistent buffers), so equal
weights under other computation (QuickGELU vs GELU, num_heads, eps, attention masks) are too; and the tokenizer's
type plus a sha256 of the token ids it gives for probe texts, so another tokenizer is never served old numbers.
"""

from __future__ import annotations

import enum
import hashlib
import json
import numbers
import types
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..errors import UserInputError
from .base import MODE_OF_DTYPE, ModelAdapter
from .card import RESIZE_MODES, ModelCard, Preprocess, WeightsSource

INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
_HF_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL resample codes in transformers processors


class PreprocessUnknown(UserInputError):
    """The model's preprocessing cannot be derived exactly; the caller must describe it."""


@dataclass(frozen=True)
class Bindings:
    """How evalsuite calls one in-memory model."""

    module: nn.Module
    encode_image: Callable[[torch.Tensor], Any]
    encode_text: Callable[[torch.Tensor], Any]
    tokenize: Callable[[list[str]], torch.Tensor]
    preprocess: dict  # size, mean, std, interpolation, resize_mode (ModelAdapter.preprocess_description)
    text_tower: Optional[nn.Module] = None  # open_clip-style tower: prompts cut to their length (checked exact)
    tokenizer: Any = None  # the caller's tokenizer object (its type is part of the identity)
    methods: tuple[str, str] = ("encode_image", "encode_text")  # what the towers are called, for errors


def state_dict_digest(module: nn.Module) -> str:
    """sha256 over the state dict in key order: name, dtype, shape and raw bytes of every tensor (GPU tensors are
    copied to the CPU one at a time). About 0.5 s for ViT-B-16's 598 MB on one CPU core."""
    h = hashlib.sha256()
    state = module.state_dict()
    for key in sorted(state):
        value = state[key]
        if not torch.is_tensor(value):  # extra state (get_extra_state): its repr is all we can hash
            h.update(f"{key}={value!r};".encode())
            continue
        h.update(f"{key}:".encode())
        _hash_tensor(h, value)
    return h.hexdigest()[:16]


def _hash_tensor(h, value: torch.Tensor) -> None:
    """dtype, shape and raw bytes (copied to the CPU: the digest does not depend on the device)."""
    h.update(f"{value.dtype}:{tuple(value.shape)};".encode())
    flat = value.detach().to("cpu").contiguous().reshape(-1)
    h.update(flat.view(torch.uint8).numpy().data if flat.numel() else b"")


def _tensor_digest(value: torch.Tensor) -> str:
    h = hashlib.sha256()
    _hash_tensor(h, value)
    return h.hexdigest()[:16]


# nn.Module's own bookkeeping (parameters, buffers, submodules, hooks, the training flag): hashed elsewhere or not
# part of the computation
_MODULE_INTERNALS = frozenset(vars(nn.Module()))
_NOT_COMPUTATION = frozenset({"name_or_path"})  # transformers' record of the folder the weights were read from
_MAX_DEPTH = 4  # nesting of containers hashed by value; deeper ones (or cycles) are named by type


def structure_digest(module: nn.Module) -> str:
    """sha256 of what computes the features besides the state dict, with no forward pass: for every submodule (by
    name) its class, its plain attributes and its forward hooks, and every non-persistent buffer (an attention
    mask). Deterministic across processes and devices. Attributes are hashed by value when that is exact
    (numbers, strings, None, dtypes, enums, tensors, functions and classes by qualified name, and containers of
    these); any other object (a transformers config) only by its type."""
    h = hashlib.sha256()
    for name, sub in module.named_modules(remove_duplicate=False):
        attributes = {key: _encode(value, 0) for key, value in vars(sub).items()
                      if key not in _MODULE_INTERNALS and key not in _NOT_COMPUTATION}
        hooks = [_qualified(hook) for hooks in (sub._forward_pre_hooks, sub._forward_hooks) for hook in hooks.values()]
        buffers = {key: _tensor_digest(sub._buffers[key]) for key in sorted(sub._non_persistent_buffers_set)
                   if sub._buffers.get(key) is not None}
        record = [name, _qualified(type(sub)), attributes, hooks, buffers]
        h.update(json.dumps(record, sort_keys=True).encode() + b"\n")
    return h.hexdigest()[:16]


def _encode(value: Any, depth: int) -> Any:
    """A JSON value for one attribute; exact where the value can be hashed exactly, else its type's name."""
    if value is None or isinstance(value, (bool, str)) or type(value) in (int, float):
        return value  # JSON keeps 1, 1.0 and true apart; floats as their shortest exact repr
    if isinstance(value, enum.Enum):
        return ["enum", _qualified(type(value)), value.name]
    if isinstance(value, numbers.Number):  # numpy scalars and other numbers, by type and exact repr
        return ["number", _qualified(type(value)), repr(value)]
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if isinstance(value, torch.dtype):
        return ["dtype", str(value)]
    if torch.is_tensor(value):
        return ["tensor", _tensor_digest(value)]
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return ["callable", _qualified(value)]
    if depth < _MAX_DEPTH and isinstance(value, (tuple, list)):
        return [type(value).__name__, [_encode(v, depth + 1) for v in value]]
    if depth < _MAX_DEPTH and isinstance(value, (set, frozenset)):  # sorted: set order changes between processes
        return ["set", sorted((_encode(v, depth + 1) for v in value), key=json.dumps)]
    if depth < _MAX_DEPTH and isinstance(value, dict):
        items = [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in value.items()]
        return ["dict", sorted(items, key=lambda kv: json.dumps(kv[0]))]
    return ["object", _qualified(type(value))]


def _qualified(obj: Any) -> str:
    """module.qualname of a class or function (of the function of a bound method; of the type of an instance)."""
    obj = getattr(obj, "__func__", obj)
    if not hasattr(obj, "__qualname__"):
        obj = type(obj)
    return f"{getattr(obj, '__module__', None)}.{obj.__qualname__}"


# texts whose token ids tell tokenizers apart: cleaning (case, punctuation, html entities, whitespace), byte-level
# handling (accents, other scripts, emoji), the empty text, and a text longer than any context (truncation and
# context length show in the ids and the shape)
TOKENIZER_PROBES = (
    "a photo of a cat.",
    "A PHOTO of a Cat!",
    "it&#39;s a dog &amp; a &quot;cat&quot; <b>",
    "  spaced\tout \n text  ",
    "café naïve façade, Zürich, 東京, Москва",
    "🐱 🐶👍🏽",
    "don't stop: e-mail @user #tag 3.14 1,000 (x) [y] {z} $5 100%",
    "",
    " ".join(f"word{i}" for i in range(1000)),
)


def tokenizer_identity(tokenizer: Any, tokenize: Callable[[list[str]], torch.Tensor], model_name: str) -> dict:
    """The tokenizer's type and a sha256 of its token ids (dtype-independent) for TOKENIZER_PROBES, each tokenized
    alone. A probe the tokenizer raises on is recorded as that exception's type: behaviour the ids cannot show."""
    h = hashlib.sha256()
    for text in TOKENIZER_PROBES:
        try:
            tokens = tokenize([text])
        except Exception as exc:  # noqa: BLE001 - a tokenizer that cannot take emoji may still serve the prompts
            h.update(f"raises {_qualified(type(exc))};".encode())
            continue
        tokens = checked_tokens(tokens, model_name).to(device="cpu", dtype=torch.int64)
        h.update(f"{tuple(tokens.shape)};".encode())
        h.update(tokens.contiguous().numpy().tobytes())
    return {"type": _qualified(type(tokenizer)), "probe_sha256": h.hexdigest()[:16]}


def checked_tokens(tokens: Any, model_name: str) -> torch.Tensor:
    """The tokenizer's output if it is a 2-D integer tensor (one row of token ids per text), else a clear error."""
    if torch.is_tensor(tokens) and tokens.dtype in (torch.int64, torch.int32) and tokens.dim() == 2:
        return tokens
    got = (f"a {tokens.dim()}-D {tokens.dtype} tensor of shape {tuple(tokens.shape)}" if torch.is_tensor(tokens)
           else type(tokens).__name__)
    raise UserInputError(f"model {model_name}: the tokenizer must return a 2-D integer tensor of token ids (one row"
                         f" per text) for a list of strings, got {got}")


@dataclass
class _TrainingState:
    """What ModelAdapter.__init__ changes on the module, to put back afterwards."""

    training: list[bool]
    requires_grad: list[bool]
    contiguous: list[bool]  # 4-D parameters in the standard layout (channels_last is set on CUDA conv towers)

    @classmethod
    def of(cls, module: nn.Module) -> "_TrainingState":
        params = list(module.parameters())
        return cls([m.training for m in module.modules()], [p.requires_grad for p in params],
                   [p.dim() == 4 and p.is_contiguous() for p in params])

    def restore(self, module: nn.Module) -> None:
        for m, flag in zip(module.modules(), self.training):
            m.training = flag
        for p, flag, contiguous in zip(module.parameters(), self.requires_grad, self.contiguous):
            p.requires_grad_(flag)
            if contiguous and not p.is_contiguous():
                p.data = p.data.contiguous()


class InMemoryAdapter(ModelAdapter):
    """A ModelAdapter over a model object; built by ``wrap``."""

    weight_kinds = ("in_memory",)

    def __init__(self, card: ModelCard, bindings: Bindings, device: torch.device, precision: str) -> None:
        self.bindings = bindings
        self._saved = _TrainingState.of(bindings.module)
        self._feature_dims: dict[str, int] = {}  # tower -> its feature size, seen on the first batch
        try:
            super().__init__(card, device, precision)
            if "text" not in self._feature_dims:
                self._probe_text_dim()
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        """Put the module's train/eval flags, requires_grad and memory format back as they were."""
        self._saved.restore(self.bindings.module)

    @classmethod
    def weights_identity(cls, card: ModelCard) -> dict:
        """The state-dict digest, plus the structure and tokenizer identities ``wrap`` puts in ``card.config``:
        what the numbers depend on besides the card's architecture, preprocessing and precision."""
        return {"state_dict_sha256": card.weights[0].ref, **(card.config or {})}

    @classmethod
    def describe_weights(cls, card: ModelCard) -> str:
        return f"in_memory:{card.weights[0].ref}"

    def _build(self) -> nn.Module:
        return self.bindings.module

    def _encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._checked_features(self.bindings.encode_image(pixels), "image", len(pixels))

    def _encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._checked_features(self.bindings.encode_text(tokens), "text", len(tokens))

    def _probe_text_dim(self) -> None:
        """Encode one prompt now (cheap next to an image) so that the first image batch is checked against the
        text feature size, even when every text comes from the feature cache."""
        tokens = self.tokenize(["a photo of a cat."]).to(self.device)
        with torch.inference_mode(), self.autocast():
            self._encode_text(tokens)

    def _checked_features(self, out: Any, tower: str, rows: int) -> torch.Tensor:
        """The tower's output if it keeps the contract: a (rows, D) tensor, D equal for both towers."""
        method = self.bindings.methods[0 if tower == "image" else 1]
        contract = ("the contract is a (N, D) tensor of features, one row per input (or a transformers output"
                    " with pooler_output)")
        features = out if torch.is_tensor(out) else getattr(out, "pooler_output", None)
        if not torch.is_tensor(features):
            raise UserInputError(f"model {self.name}: the {tower} tower ({method}) returned"
                                 f" {type(out).__module__}.{type(out).__qualname__}, not features; {contract}")
        if features.dim() != 2 or features.shape[0] != rows:
            raise UserInputError(f"model {self.name}: the {tower} tower ({method}) returned features of shape"
                                 f" {tuple(features.shape)} for {rows} inputs; {contract}")
        dims = self._feature_dims
        if dims.setdefault(tower, features.shape[1]) != features.shape[1]:
            raise UserInputError(f"model {self.name}: the {tower} tower ({method}) returned {features.shape[1]}"
                                 f" features per input after {dims[tower]}; {contract}, D the same for every call")
        if len(set(dims.values())) > 1:
            image, text = self.bindings.methods
            raise UserInputError(f"model {self.name}: the image tower ({image}) returns {dims['image']} features per"
                                 f" input and the text tower ({text}) {dims['text']}; zero-shot scores compare image"
                                 " and text features directly, so both must return features of one size (the"
                                 " shared embedding)")
        return features

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return checked_tokens(self.bindings.tokenize(texts), self.name)

    def preprocess_description(self) -> dict:
        return dict(self.bindings.preprocess)

    def _text_tower(self) -> Optional[nn.Module]:
        return self.bindings.text_tower


# --------------------------------------------------------------------------------------------------------------
# building the adapter from what the caller passed


def wrap(model: nn.Module, *, preprocess=None, tokenizer=None, processor=None, name: Optional[str] = None,
         precision: Optional[str] = None, device: Optional[str] = None) -> InMemoryAdapter:
    """The adapter for an in-memory model (see ``evalsuite.evaluate`` for what each argument may be)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"evaluate: model must be a model name (str) or a torch.nn.Module, got"
                        f" {type(model).__name__}")
    structure = structure_digest(model)  # before anything touches the module
    bindings = _bindings(model, preprocess, tokenizer, processor)
    dev = _device_of(model, device)
    mode = _precision_of(model, precision)
    p = bindings.preprocess
    name = name or type(model).__name__
    identity = {"structure_sha256": structure,
                "tokenizer": tokenizer_identity(bindings.tokenizer, bindings.tokenize, name)}
    card = ModelCard(
        name=name, adapter="in_memory", architecture=_qualified(type(model)), image_size=p["size"],
        preprocess=Preprocess(list(p["mean"]), list(p["std"]), p["interpolation"], p["resize_mode"]),
        weights=[WeightsSource("in_memory", state_dict_digest(model))], precision=mode, config=identity,
        notes="an in-memory model passed to evalsuite.evaluate; config: its structure and tokenizer identity")
    return InMemoryAdapter(card, bindings, dev, mode)


def _bindings(model: nn.Module, preprocess, tokenizer, processor) -> Bindings:
    is_hf = hasattr(model, "get_image_features") and hasattr(model, "get_text_features")
    if processor is not None:
        preprocess = preprocess if preprocess is not None else getattr(processor, "image_processor", None)
        tokenizer = tokenizer if tokenizer is not None else getattr(processor, "tokenizer", None)
    if is_hf and not hasattr(model, "encode_image"):
        encode_image = lambda pixels: model.get_image_features(pixel_values=pixels)  # noqa: E731
        encode_text = lambda tokens: model.get_text_features(input_ids=tokens)  # noqa: E731
        text_tower, methods = None, ("get_image_features", "get_text_features")
    elif callable(getattr(model, "encode_image", None)) and callable(getattr(model, "encode_text", None)):
        encode_image, encode_text = model.encode_image, model.encode_text
        methods = ("encode_image", "encode_text")
        # the tower open_clip's adapter uses: prompts encoded at their length where that is exact (probed)
        text_tower = model if hasattr(model, "token_embedding") else getattr(model, "text", None)
    else:
        raise TypeError(f"evaluate: {type(model).__name__} has neither encode_image/encode_text (open_clip, or the"
                        " evalsuite.ClipModel protocol) nor get_image_features/get_text_features (transformers)")
    if tokenizer is None:
        raise TypeError("evaluate: an in-memory model needs tokenizer= (e.g. open_clip.get_tokenizer(NAME), or"
                        " processor= for transformers): the model object does not say which one it was trained with")
    return Bindings(model, encode_image, encode_text, _tokenize_fn(model, tokenizer),
                    describe_preprocess(model, preprocess), text_tower if isinstance(text_tower, nn.Module) else None,
                    tokenizer, methods)


def _tokenize_fn(model: nn.Module, tokenizer) -> Callable[[list[str]], torch.Tensor]:
    if hasattr(tokenizer, "model_input_names") and hasattr(tokenizer, "pad_token_id"):  # a transformers tokenizer
        config = getattr(model, "config", None)
        length = getattr(getattr(config, "text_config", config), "max_position_embeddings", 77)
        # padded to the full context as the hf adapter does (pooling at the end-of-text token is unaffected)
        return lambda texts: tokenizer(texts, padding="max_length", max_length=length, truncation=True,
                                       return_tensors="pt").input_ids
    if not callable(tokenizer):
        raise TypeError(f"evaluate: tokenizer must be callable (list of str -> token id tensor), got"
                        f" {type(tokenizer).__name__}")
    return tokenizer


def describe_preprocess(model: nn.Module, preprocess) -> dict:
    """size/mean/std/interpolation/resize_mode from an explicit description (``evalsuite.Preprocessing`` or a
    mapping), an open_clip/torchvision eval ``Compose``, a transformers image processor, or the model's own
    ``visual.preprocess_cfg`` (open_clip); PreprocessUnknown when none of them says it exactly."""
    if preprocess is None:
        cfg = getattr(getattr(model, "visual", None), "preprocess_cfg", None)
        if cfg:
            return _from_open_clip_cfg(dict(cfg))
        raise PreprocessUnknown(
            f"the preprocessing of {type(model).__name__} cannot be derived (no preprocess= and no"
            " model.visual.preprocess_cfg); pass preprocess= the eval transform (open_clip's preprocess), or"
            " evalsuite.Preprocessing(size=224, mean=..., std=..., interpolation='bicubic', resize_mode='shortest')")
    if hasattr(preprocess, "transforms"):
        return _from_compose(preprocess)
    if hasattr(preprocess, "image_mean") and hasattr(preprocess, "do_normalize"):
        return _from_hf_processor(preprocess)
    if hasattr(preprocess, "as_dict"):
        preprocess = preprocess.as_dict()
    if isinstance(preprocess, dict):
        return _checked(dict(preprocess), "preprocess=")
    raise PreprocessUnknown(f"preprocess={type(preprocess).__name__}: expected an eval transform (Compose), a"
                            " transformers image processor, or evalsuite.Preprocessing(...)")


def _checked(p: dict, where: str) -> dict:
    keys = ("size", "mean", "std", "interpolation", "resize_mode")
    p.setdefault("interpolation", "bicubic")
    p.setdefault("resize_mode", "shortest")
    if set(p) != set(keys):
        raise PreprocessUnknown(f"{where}: expected the keys {', '.join(keys)}, got {', '.join(sorted(p))}")
    size = p["size"]
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise PreprocessUnknown(f"{where}: non-square input size {list(size)} is not supported")
        size = size[0]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise PreprocessUnknown(f"{where}: size must be a positive whole number, got {size!r}")
    if len(p["mean"]) != 3 or len(p["std"]) != 3:
        raise PreprocessUnknown(f"{where}: mean and std need 3 values each")
    if p["interpolation"] not in INTERPOLATIONS or p["resize_mode"] not in RESIZE_MODES:
        raise PreprocessUnknown(f"{where}: interpolation must be one of {INTERPOLATIONS} and resize_mode one of"
                                f" {RESIZE_MODES}, got {p['interpolation']!r}, {p['resize_mode']!r}")
    return {"size": size, "mean": [float(v) for v in p["mean"]], "std": [float(v) for v in p["std"]],
            "interpolation": p["interpolation"], "resize_mode": p["resize_mode"]}


def _from_open_clip_cfg(cfg: dict) -> dict:
    if cfg.get("mode", "RGB") != "RGB" or cfg.get("resize_mode", "shortest") not in RESIZE_MODES:
        raise PreprocessUnknown(f"model.visual.preprocess_cfg {cfg}: mode/resize_mode not supported; pass"
                                " preprocess=evalsuite.Preprocessing(...)")
    if not all(k in cfg for k in ("size", "mean", "std")):
        raise PreprocessUnknown(f"model.visual.preprocess_cfg {cfg} lacks size, mean or std; pass preprocess=")
    return _checked({k: cfg[k] for k in ("size", "mean", "std", "interpolation", "resize_mode") if k in cfg},
                    "model.visual.preprocess_cfg")


def _from_compose(compose) -> dict:
    """open_clip's eval transform: Resize(s) + CenterCrop(s) (shortest) or Resize((s, s)) (squash), then RGB
    conversion, ToTensor and Normalize; anything else (augmentations, other crops) is refused, never guessed."""
    from torchvision import transforms as T

    steps = list(compose.transforms)
    names = [type(t).__name__ for t in steps]
    refuse = PreprocessUnknown(f"preprocess={names}: not an eval transform evalsuite can reproduce exactly"
                               " (Resize [+ CenterCrop], RGB conversion, ToTensor, Normalize); pass"
                               " preprocess=evalsuite.Preprocessing(size=..., mean=..., std=..., interpolation=...,"
                               " resize_mode=...) describing it")
    if len(steps) not in (4, 5) or not isinstance(steps[0], T.Resize) or steps[0].max_size is not None:
        raise refuse
    resize, rest = steps[0], steps[1:]
    if isinstance(rest[0], T.CenterCrop):
        crop = tuple(rest[0].size)
        size = resize.size[0] if isinstance(resize.size, (list, tuple)) and len(resize.size) == 1 else resize.size
        if not isinstance(size, int) or crop != (size, size):
            raise refuse
        mode, rest = "shortest", rest[1:]
    else:
        sizes = tuple(resize.size) if isinstance(resize.size, (list, tuple)) else ()
        if len(sizes) != 2 or sizes[0] != sizes[1]:
            raise refuse
        size, mode = sizes[0], "squash"
    if len(rest) != 3:
        raise refuse
    convert, to_tensor, normalize = rest
    rgb = getattr(convert, "mode", None) == "RGB" or getattr(convert, "__name__", "") == "_convert_to_rgb"
    if not rgb or not isinstance(to_tensor, T.ToTensor) or not isinstance(normalize, T.Normalize):
        raise refuse
    return _checked({"size": size, "mean": list(normalize.mean), "std": list(normalize.std),
                     "interpolation": resize.interpolation.value, "resize_mode": mode}, "preprocess=")


def _from_hf_processor(proc) -> dict:
    """A CLIPImageProcessor's description (shortest edge = crop, or a square resize without crop), applied with
    evalsuite's transform as for ``--model hf:REPO``."""
    size, crop = dict(getattr(proc, "size", None) or {}), dict(getattr(proc, "crop_size", None) or {})
    resample = getattr(proc, "resample", 3)
    resample = getattr(resample, "value", resample)
    ok = (getattr(proc, "do_resize", True) and getattr(proc, "do_normalize", True)
          and getattr(proc, "do_rescale", True) and abs(getattr(proc, "rescale_factor", 1 / 255) - 1 / 255) < 1e-12
          and resample in _HF_RESAMPLE)
    if ok and getattr(proc, "do_center_crop", False) and "shortest_edge" in size:
        side, mode = size["shortest_edge"], "shortest"
        ok = crop.get("height") == crop.get("width") == side
    elif ok and not getattr(proc, "do_center_crop", False) and size.get("height") == size.get("width"):
        side, mode = size.get("height"), "squash"
    else:
        ok = False
    if not ok:
        raise PreprocessUnknown(f"image processor {type(proc).__name__} (size {size}, crop {crop}): not a resize"
                                " evalsuite reproduces exactly; pass preprocess=evalsuite.Preprocessing(...)")
    return _checked({"size": side, "mean": list(proc.image_mean), "std": list(proc.image_std),
                     "interpolation": _HF_RESAMPLE[resample], "resize_mode": mode}, "image processor")


def _device_of(model: nn.Module, requested: Optional[str]) -> torch.device:
    """The model's own device: evaluate never moves it."""
    devices = {t.device for t in list(model.parameters()) + list(model.buffers())}
    if len(devices) != 1:
        raise UserInputError(f"evaluate: the model's tensors are on {len(devices)} devices"
                             f" ({', '.join(sorted(map(str, devices)))}); evaluate takes a model on one device")
    (device,) = devices
    if requested not in (None, "auto") and torch.device(requested) != device and not (
            device.type == "cuda" and requested == "cuda"):
        raise UserInputError(f"evaluate: device={requested!r} but the model is on {device}; evaluate uses the"
                             " model where it is (move it yourself, or drop device=)")
    return device


def _precision_of(model: nn.Module, requested: Optional[str]) -> str:
    """The module's own dtype (fp32, fp16, bf16), or autocast over fp32 weights; never a cast of the user's model."""
    dtypes = {t.dtype for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in MODE_OF_DTYPE:
        raise UserInputError(f"evaluate: the model's floating tensors have dtypes {sorted(map(str, dtypes))};"
                             " evaluate needs one of float32, float16, bfloat16 throughout (it never casts your"
                             " model)")
    own = MODE_OF_DTYPE[next(iter(dtypes))]
    if requested in (None, own) or (own == "fp32" and requested in ("amp_fp16", "amp_bf16")):
        return requested or own
    raise UserInputError(f"evaluate: precision={requested!r} would cast the model, whose weights are {own};"
                         f" evaluate never casts your model: cast a copy yourself, or use precision={own!r}"
                         + (" / amp_fp16 / amp_bf16 (autocast)" if own == "fp32" else ""))
