"""Hugging Face transformers models: plain ``CLIPModel`` checkpoints (e.g. ``hf:openai/clip-vit-base-patch32``) and
repos with their own modelling code (e.g. ``hf:BAAI/EVA-CLIP-8B``), the latter only where that code is trusted.

Remote code (a repo's ``configuration_*.py`` / ``modeling_*.py``) runs only from:

- the repo a model card names with ``trust_remote_code: true``, at the commit the card pins (``revision:``, a
  40-hex commit hash), fetched through the Hugging Face cache, or that repo's exact snapshot folder in a cache
  (``models--ORG--NAME/snapshots/<pinned commit>``, its code and config files verified against their blob ids);
- anything else only with the user's ``--trust-remote-code``, with a warning.

``--weights`` replaces the weights only, never the code: with a card that trusts remote code, the code and
config come from the card's pinned commit and the weights from the folder; that folder's own ``*.py`` never runs.
A card that trusts remote code but pins no commit is refused with a message saying so.

Preprocessing comes from the card when there is one, else from the repo's ``preprocessor_config.json``
(CLIPImageProcessor: shortest-edge resize, centre crop, mean/std), applied with the same transform code as
every other adapter. The authors of EVA-CLIP warn that their HF weights may score differently from the PyTorch
weights the papers used.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..errors import ModelLoadError
from .base import ModelAdapter, folder_digests, weight_dtype
from .weights import check_weights_file, explain_weights_error, hf_snapshot_of, hub_commit, snapshot_problem

log = logging.getLogger(__name__)
_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL resample codes in preprocessor configs
_WEIGHT_GLOBS = ("*.safetensors", "*.bin")


@dataclass(frozen=True)
class RemoteCodePlan:
    """Where the modelling code (and config) come from, and where the weights come from."""

    code_ref: str
    code_revision: Optional[str]
    weights_ref: str
    weights_revision: Optional[str]
    why: str

    @property
    def separate_weights(self) -> bool:
        return (self.code_ref, self.code_revision) != (self.weights_ref, self.weights_revision)


def _needs_code_message(ref: str) -> str:
    return (f"hf:{ref} needs its own modelling code (its config.json names Python files in auto_map), and"
            " evalsuite runs such code only from the Hugging Face repo a model card trusts, at the commit the card"
            " pins (e.g. --model hf:BAAI/EVA-CLIP-8B), or with --trust-remote-code if you have read that code"
            " and trust it")


def require_pin(card) -> None:
    """A card that trusts remote code but pins no commit: refused (unless --trust-remote-code)."""
    code = card.code_source if card.trust_remote_code else None
    if code is not None and code.revision is None and not card.user_trusts_remote_code:
        raise ModelLoadError(
            f"model card {card.name!r} ({card.file or 'built in'}) trusts the remote code of {code.ref} but pins no"
            f" commit: evalsuite runs remote code only at a pinned commit. Add `revision: <40-hex commit>` (the"
            f" commit whose code you reviewed) to its hf_repo source, or pass --trust-remote-code"
        )


def remote_code_plan(card, source) -> RemoteCodePlan:
    """Decide whether the remote code the weights source needs may run, and from where; ModelLoadError if not."""
    ref, revision = source.ref, source.revision
    folder = Path(ref).expanduser()
    local = folder.is_dir()
    require_pin(card)
    code = card.code_source if card.trust_remote_code else None
    if code is not None:
        if not local and (ref, revision) == (code.ref, code.revision):
            return RemoteCodePlan(code.ref, code.revision, ref, revision,
                                  f"card {card.name!r}: {code.ref}@{code.revision}")
        if local and hf_snapshot_of(folder) == (code.ref, code.revision):
            problem = snapshot_problem(folder, code.ref, code.revision)
            if problem is None:
                return RemoteCodePlan(str(folder), None, str(folder), None,
                                      f"card {card.name!r}: verified cache snapshot of {code.ref}@{code.revision}")
            if not card.user_trusts_remote_code:
                raise ModelLoadError(f"hf:{ref}: its code cannot be verified as {code.ref} at the pinned commit:"
                                     f" {problem}. Re-download it, or pass --trust-remote-code")
        if not card.user_trusts_remote_code:
            # --weights replaces the weights only: the code and config come from the card's pinned commit
            return RemoteCodePlan(code.ref, code.revision, ref, revision,
                                  f"card {card.name!r}: code of {code.ref}@{code.revision}, weights from {ref}")
    if card.user_trusts_remote_code:
        log.warning("--trust-remote-code: running the modelling code of %s%s, which no model card pins; it can do"
                    " anything your user account can", ref, f"@{revision}" if revision else "")
        return RemoteCodePlan(ref, revision, ref, revision, "--trust-remote-code")
    raise ModelLoadError(_needs_code_message(ref))


class HfAdapter(ModelAdapter):
    weight_kinds = ("hf_repo",)

    @classmethod
    def weights_identity(cls, card) -> dict:
        source = cls.weights_source(card)
        folder = Path(source.ref).expanduser()
        if folder.is_dir():
            if not any(p for ext in _WEIGHT_GLOBS for p in folder.glob(ext)):
                raise ModelLoadError(f"{folder}: no weights (*.safetensors, *.bin) in this Hugging Face folder")
            # transformers reads config.json, preprocessor_config.json and the tokenizer files beside the weights
            return {"files": folder_digests(folder), **_code_identity(card, str(folder), None)}
        require_pin(card)  # that refusal first: it is the one to fix
        commit = _repo_commit(source)
        return {"hf_repo": f"{source.ref}@{commit}", **_code_identity(card, source.ref, commit)}

    def _build(self) -> nn.Module:
        from transformers import AutoConfig, CLIPModel

        source = self.weights_source(self.card)
        repo, revision = source.ref, source.revision
        folder = Path(repo).expanduser()
        if folder.is_dir():
            for path in sorted(p for ext in _WEIGHT_GLOBS for p in folder.glob(ext)):
                check_weights_file(path)
        self.dtype = weight_dtype(self.precision)
        plan = None
        require_pin(self.card)  # an unpinned card is refused before anything is read
        if not folder.is_dir():  # at the commit the fingerprint names, never wherever the branch points by now
            source = dataclasses.replace(source, revision=_repo_commit(source))
            revision = source.revision
        try:
            # never with remote code: a repo that needs its own code raises here, before any of it is imported
            config = AutoConfig.from_pretrained(repo, revision=revision, trust_remote_code=False)
        except ValueError as exc:
            if "trust_remote_code" not in str(exc) and "custom code" not in str(exc):
                raise ModelLoadError(f"hf:{repo}: cannot read its config: {_first_line(exc)}") from exc
            plan = remote_code_plan(self.card, source)
            config = self._remote_config(plan)
        except OSError as exc:
            raise ModelLoadError(
                f"hf:{repo}: not found locally or in the Hugging Face cache ({_first_line(exc)});"
                " download it (huggingface-cli download REPO) or pass a local folder as hf:/path/to/folder"
            ) from exc
        self.is_clip = plan is None and config.model_type == "clip"
        if plan is None and not self.is_clip:
            raise ModelLoadError(f"hf:{repo} is a {config.model_type!r} model, not a CLIPModel; other kinds load only"
                                 " with their own modelling code (a model card with trust_remote_code: true and a"
                                 " pinned revision)")
        if plan is not None:
            log.info("hf:%s: modelling code from %s", repo, plan.why)
        try:
            if self.is_clip:
                model, info = CLIPModel.from_pretrained(repo, revision=revision, dtype=self.dtype,
                                                        output_loading_info=True)
            else:
                model, info = self._remote_model(plan, config)
            _check_loaded(repo, model, info)
            tokenizer_ref, tokenizer_rev = (plan.code_ref, plan.code_revision) if plan else (repo, revision)
            self._tokenizer = _tokenizer(tokenizer_ref, tokenizer_rev)
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - transformers, torch and safetensors raise many kinds for a bad file
            reason = explain_weights_error(repo, exc)
            if reason is None and not isinstance(exc, (OSError, ValueError, RuntimeError, EOFError, KeyError)):
                raise
            raise ModelLoadError(reason or f"hf:{repo}: cannot load the model or tokenizer: {_first_line(exc)}"
                                 ) from exc
        self.context_length = getattr(getattr(config, "text_config", config), "max_position_embeddings", 77)
        self._preprocess = self._preprocess_cfg(*((plan.code_ref, plan.code_revision) if plan else (repo, revision)))
        return model.to(self.device)

    def _remote_config(self, plan: RemoteCodePlan):
        from transformers import AutoConfig

        _refuse_foreign_code(plan)
        _refuse_edited_cache(plan)
        try:
            return AutoConfig.from_pretrained(plan.code_ref, revision=plan.code_revision, trust_remote_code=True)
        except OSError as exc:
            raise ModelLoadError(
                f"the modelling code of {plan.code_ref} at commit {plan.code_revision} (the model card's pin) is not"
                f" available here ({_first_line(exc)}); --weights replaces the weights only, the code comes from the"
                f" card's pinned commit. Fetch it where the hub is reachable (`hf download {plan.code_ref} --revision"
                f" {plan.code_revision}`), or run the folder's own code with --trust-remote-code"
            ) from exc

    def _remote_model(self, plan: RemoteCodePlan, config):
        from transformers import AutoModel
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        if not plan.separate_weights:
            return AutoModel.from_pretrained(plan.code_ref, revision=plan.code_revision, config=config,
                                             dtype=self.dtype, trust_remote_code=True, output_loading_info=True)
        class_ref = (getattr(config, "auto_map", None) or {}).get("AutoModel")
        if not class_ref:
            raise ModelLoadError(f"{plan.code_ref}@{plan.code_revision}: its config.json names no AutoModel class")
        model_cls = get_class_from_dynamic_module(class_ref, plan.code_ref, revision=plan.code_revision)
        # the class and config are the pinned code's; from the weights folder only tensors are read
        return model_cls.from_pretrained(plan.weights_ref, revision=plan.weights_revision, config=config,
                                         dtype=self.dtype, output_loading_info=True)

    def _preprocess_cfg(self, repo: str, revision: Optional[str] = None) -> dict:
        card = self.card
        if card.preprocess is not None:
            p = card.preprocess
            return {"size": card.image_size, "mean": list(p.mean), "std": list(p.std),
                    "interpolation": p.interpolation, "resize_mode": p.resize_mode}
        from transformers.utils import cached_file

        path = cached_file(repo, "preprocessor_config.json", revision=revision,
                           _raise_exceptions_for_missing_entries=False)
        if path is None:
            raise ModelLoadError(f"hf:{repo} has no preprocessor_config.json; write a model card with preprocess")
        cfg = json.loads(Path(path).read_text())
        crop = cfg.get("crop_size", cfg.get("size"))
        size = crop.get("height", crop.get("shortest_edge")) if isinstance(crop, dict) else crop
        resize_mode = "shortest" if cfg.get("do_center_crop", True) else "squash"
        return {"size": size, "mean": cfg["image_mean"], "std": cfg["image_std"],
                "interpolation": _RESAMPLE.get(cfg.get("resample", 3), "bicubic"), "resize_mode": resize_mode}

    def preprocess_description(self) -> dict:
        return dict(self._preprocess)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        # padded to the full context like open_clip, so pooling at the end-of-text token is unaffected
        return self._tokenizer(texts, padding="max_length", max_length=self.context_length, truncation=True,
                               return_tensors="pt").input_ids

    def _encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(self.dtype)
        out = self.module.get_image_features(pixel_values=pixels) if self.is_clip else self.module.encode_image(pixels)
        return out if torch.is_tensor(out) else out.pooler_output  # transformers 5 returns projected pooler_output

    def _encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.module.get_text_features(input_ids=tokens) if self.is_clip else self.module.encode_text(tokens)
        return out if torch.is_tensor(out) else out.pooler_output


def _repo_commit(source) -> str:
    """The commit an unpinned ``hf:ORG/NAME`` (or a pinned branch or tag) is read at: ``weights.hub_commit``."""
    files = ["config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
             "pytorch_model.bin.index.json"]
    at = f"@{source.revision}" if source.revision else ""
    return hub_commit(source.ref, source.revision, files, lambda why: ModelLoadError(
        f"hf:{source.ref}{at}: not found locally or in the Hugging Face cache ({why}); download it"
        f" (huggingface-cli download {source.ref}) or pass a local folder as hf:/path/to/folder"))


def _code_identity(card, ref: str, revision: Optional[str]) -> dict:
    """The pinned modelling code a card lends, where it is not the weights' own repo and commit (``--weights``)."""
    code = card.code_source if card.trust_remote_code else None
    if code is None or (code.ref, code.revision) == (ref, revision):
        return {}
    return {"code": f"{code.ref}@{code.revision}"}


def _tokenizer(ref: str, revision: Optional[str]):
    from transformers import AutoTokenizer

    # a tokenizer never brings its own code: trust_remote_code stays off for it
    return AutoTokenizer.from_pretrained(ref, revision=revision, trust_remote_code=False)


def _refuse_foreign_code(plan: RemoteCodePlan) -> None:
    """An auto_map entry ``other/repo--module.Class`` would import code from another repo at its moving head,
    outside the pin; refused unless the user trusts remote code wholesale."""
    if plan.why == "--trust-remote-code":
        return
    from transformers.utils import cached_file

    try:
        path = cached_file(plan.code_ref, "config.json", revision=plan.code_revision)
    except OSError:
        return  # reported by the config load that follows
    try:
        auto_map = json.loads(Path(path).read_text(encoding="utf-8")).get("auto_map") or {}
    except (OSError, ValueError, AttributeError):
        return
    refs = [v for v in auto_map.values() for v in (v if isinstance(v, list) else [v]) if isinstance(v, str)]
    foreign = sorted({r.split("--")[0] for r in refs if "--" in r})
    if foreign:
        raise ModelLoadError(f"{plan.code_ref}@{plan.code_revision}: its config.json loads code from another repo"
                             f" ({', '.join(foreign)}), which the card's pin does not cover; evalsuite refuses it"
                             " (--trust-remote-code overrides)")


def _refuse_edited_cache(plan: RemoteCodePlan) -> None:
    """The pinned commit read from the Hugging Face cache: its snapshot's code and config must still be what the
    hub served (an edited file in the cache would otherwise run as the pinned code)."""
    if plan.why == "--trust-remote-code" or plan.code_revision is None or Path(plan.code_ref).expanduser().is_dir():
        return
    from huggingface_hub import constants

    snapshot = (Path(constants.HF_HUB_CACHE) / f"models--{plan.code_ref.replace('/', '--')}" / "snapshots"
                / plan.code_revision)
    if snapshot.is_dir():
        problem = snapshot_problem(snapshot, plan.code_ref, plan.code_revision)
        if problem is not None:
            raise ModelLoadError(f"{plan.code_ref}@{plan.code_revision} in the Hugging Face cache cannot be verified:"
                                 f" {problem}. Delete {snapshot} and download it again")


def _check_loaded(repo: str, model: nn.Module, info: dict) -> None:
    """Never random weights: a parameter the checkpoint did not provide (transformers initialises it and warns)
    or one of another shape is an error."""
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(k for k in info.get("missing_keys", ()) if k in params)
    mismatched = sorted(str(m[0]) if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys", ()))
    if missing or mismatched:
        parts = [f"{len(missing)} parameter(s) missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
                 if missing else "", f"{len(mismatched)} of another shape ({', '.join(mismatched[:3])})" if mismatched
                 else ""]
        raise ModelLoadError(f"hf:{repo}: the weights do not fit the model: {'; '.join(p for p in parts if p)};"
                             " evalsuite never evaluates randomly initialised parameters")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
