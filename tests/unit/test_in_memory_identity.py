"""An in-memory model's identity (models/in_memory.py) covers everything its numbers depend on: besides the state
dict, the tokenizer (type + token ids of probe texts) and the structure (submodule classes, plain attributes,
non-persistent buffers), exactly and the same in every process; and the towers' outputs are checked against the
evalsuite.ClipModel contract with errors that name it."""

import copy
import subprocess
import sys
import types

import open_clip
import pytest
import torch
from torch import nn

import evalsuite
from evalsuite.errors import UserInputError
from evalsuite.models import in_memory
from evalsuite.models.in_memory import state_dict_digest, wrap
from evalsuite.models.tiny import TINY_MODEL_CFG

PREPROCESS = evalsuite.Preprocessing(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def tiny_clip(seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    cfg = copy.deepcopy(TINY_MODEL_CFG)
    for key, value in overrides.pop("text_cfg", {}).items():
        cfg["text_cfg"][key] = value
    return open_clip.CLIP(**cfg, **overrides).eval()


def tokenizer():
    return open_clip.SimpleTokenizer(context_length=77)


def fingerprint(model: nn.Module, tok=None) -> str:
    adapter = wrap(model, preprocess=PREPROCESS, tokenizer=tok or tokenizer())
    try:
        return adapter.fingerprint()
    finally:
        adapter.restore()


# --- the tokenizer ----------------------------------------------------------------------------------------------


class Wrapper:
    """One tokenizer type for every behaviour: only the token ids can tell two of them apart."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, texts):
        return self.fn(texts)


def test_another_tokenizer_is_another_model():
    model, tok = tiny_clip(), tokenizer()
    base = fingerprint(model, Wrapper(tok))
    assert fingerprint(model, Wrapper(tokenizer())) == base  # another object that tokenizes the same
    assert fingerprint(model, Wrapper(lambda texts: tok(texts).to(torch.int32))) == base  # the ids, not their dtype
    assert fingerprint(model, tok) != base  # another tokenizer type
    others = {
        "canonicalize": open_clip.SimpleTokenizer(context_length=77, clean="canonicalize"),  # lower case, no '.'
        # these agree with tok on plain prompts: only a probe with accents, other scripts or emoji, html entities,
        # or a text longer than the context tells them apart
        "ascii-folded": lambda texts: tok([t.encode("ascii", "ignore").decode() for t in texts]),
        "no html unescaping": lambda texts: tok([t.replace("&", "and") for t in texts]),
        "cut at 10 words": lambda texts: tok([" ".join(t.split()[:10]) for t in texts]),
    }
    plain = ["a photo of a cat.", "a photo of a dog."]
    assert all(torch.equal(others[name](plain), tok(plain)) for name in list(others)[1:])
    prints = {fingerprint(model, Wrapper(other)) for other in others.values()}
    assert len(prints) == len(others) and base not in prints


def test_a_tokenizer_that_breaks_the_contract_is_refused_when_wrapped():
    model, tok = tiny_clip(), tokenizer()
    with pytest.raises(UserInputError, match=r"model m: the tokenizer must return a 2-D integer tensor.*got list"):
        wrap(model, preprocess=PREPROCESS, tokenizer=lambda texts: tok(texts).tolist(), name="m")
    with pytest.raises(UserInputError, match=r"got a 1-D torch.int64 tensor of shape \(1,\)"):
        wrap(model, preprocess=PREPROCESS, tokenizer=lambda texts: tok(texts)[:, 0])


# --- the structure ----------------------------------------------------------------------------------------------


def same_weights(model: nn.Module, like: nn.Module) -> nn.Module:
    model.load_state_dict(like.state_dict())
    assert state_dict_digest(model) == state_dict_digest(like)
    return model


def test_equal_weights_under_other_computation_are_other_models():
    gelu = tiny_clip()
    quick = same_weights(tiny_clip(quick_gelu=True), gelu)  # the OpenAI-weights pitfall
    heads = same_weights(tiny_clip(text_cfg={"heads": 4}), gelu)  # MultiheadAttention num_heads: same shapes
    assert heads.transformer.resblocks[0].attn.num_heads == 4
    eps = same_weights(tiny_clip(), gelu)
    eps.ln_final.eps = 1e-3
    mask = same_weights(tiny_clip(), gelu)  # a non-persistent buffer: not in the state dict
    mask.attn_mask.fill_(0.0)
    attribute = same_weights(tiny_clip(), gelu)
    attribute.text_pool_type = "last"
    prints = [fingerprint(m) for m in (quick, heads, eps, mask, attribute)]
    assert len(set(prints)) == 5 and fingerprint(gelu) not in prints
    base = in_memory.structure_digest(gelu)
    assert in_memory.structure_digest(tiny_clip(seed=1)) == base  # other weights, same structure
    assert base not in {in_memory.structure_digest(m) for m in (quick, heads, eps, mask, attribute)}


def test_the_structure_ignores_training_flags_and_is_computed_before_wrap_touches_the_model():
    model = tiny_clip()
    base = in_memory.structure_digest(model)
    model.train()
    model.visual.eval()
    assert in_memory.structure_digest(model) == base
    adapter = wrap(model, preprocess=PREPROCESS, tokenizer=tokenizer())
    adapter.encode_image(torch.rand(2, 3, 32, 32))
    adapter.restore()
    assert in_memory.structure_digest(model) == base and adapter.card.config["structure_sha256"] == base


def test_the_identity_is_the_same_in_every_process():
    """Set iteration order and str hashes change with PYTHONHASHSEED; the digests must not."""
    code = """
import torch, open_clip
from torch import nn
from evalsuite.models.in_memory import structure_digest, tokenizer_identity
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 4), nn.GELU())
model.names = {"alpha", "beta", "gamma", "delta", "epsilon"}
model.table = {"b": (1, 2.5, None), "a": [True, "x"], 3: torch.float16}
model.register_buffer("mask", torch.ones(3), persistent=False)
tok = open_clip.SimpleTokenizer()
print(structure_digest(model), tokenizer_identity(tok, tok, "m"))
"""
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2")}
    assert len(outputs) == 1 and outputs.pop().strip()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_identity_does_not_depend_on_the_device():
    model = tiny_clip()
    on_cpu = fingerprint(model)
    assert fingerprint(model.cuda()) == on_cpu


# --- the towers' outputs ----------------------------------------------------------------------------------------


class Towers(nn.Module):
    """The evalsuite.ClipModel protocol with outputs the test shapes."""

    def __init__(self, image_dim: int = 16, text_dim: int = 16, image_out=None, text_out=None):
        super().__init__()
        self.image = nn.Linear(3 * 32 * 32, image_dim)
        self.text = nn.Embedding(49408, text_dim)
        self.image_out, self.text_out = image_out, text_out

    def encode_image(self, pixels):
        features = self.image(pixels.flatten(1))
        return self.image_out(features) if self.image_out else features

    def encode_text(self, tokens):
        features = self.text(tokens).mean(1)
        return self.text_out(features) if self.text_out else features


def wrapped(model: nn.Module):
    return wrap(model, preprocess=PREPROCESS, tokenizer=tokenizer(), name="mine")


CONTRACT = r"the contract is a \(N, D\) tensor of features, one row per input \(or a transformers output"


@pytest.mark.parametrize("image_out, message", [
    (lambda f: (f, f), r"the image tower \(encode_image\) returned builtins.tuple, not features"),
    (lambda f: {"features": f}, r"the image tower \(encode_image\) returned builtins.dict, not features"),
    (lambda f: f[:, None].expand(-1, 4, -1), r"the image tower \(encode_image\) returned features of shape"
                                             r" \(2, 4, 16\) for 2 inputs"),
    (lambda f: f[:1], r"the image tower \(encode_image\) returned features of shape \(1, 16\) for 2 inputs"),
])
def test_an_image_tower_that_breaks_the_contract_is_named(image_out, message):
    adapter = wrapped(Towers(image_out=image_out))
    with pytest.raises(UserInputError, match=f"model mine: {message}; {CONTRACT}"):
        adapter.encode_image(torch.rand(2, 3, 32, 32))


def test_a_text_tower_that_breaks_the_contract_is_refused_when_wrapped():
    with pytest.raises(UserInputError, match=r"model mine: the text tower \(encode_text\) returned builtins.tuple"):
        wrapped(Towers(text_out=lambda f: (f,)))


def test_image_and_text_features_of_other_sizes_are_refused_on_the_first_image_batch():
    adapter = wrapped(Towers(image_dim=8, text_dim=16))  # the text size is probed when the model is wrapped
    with pytest.raises(UserInputError, match=r"model mine: the image tower \(encode_image\) returns 8 features per"
                                             r" input and the text tower \(encode_text\) 16; zero-shot"):
        adapter.encode_image(torch.rand(2, 3, 32, 32))


def test_a_transformers_output_object_is_read_through_pooler_output():
    pooled = wrapped(Towers(image_out=lambda f: types.SimpleNamespace(pooler_output=f)))
    features = pooled.encode_image(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, 16)
    broken = wrapped(Towers(image_out=lambda f: types.SimpleNamespace(pooler_output=None)))
    with pytest.raises(UserInputError, match="returned types.SimpleNamespace, not features"):
        broken.encode_image(torch.rand(2, 3, 32, 32))
