"""Native EVA-CLIP loading: oracle equivalence, layouts, strict keys, pos_embed resize, dtype casting.

The self-contained tests compare evalsuite's model (timm Eva + open_clip TextTransformer) with an independent
pure-torch reference of the upstream computation written here, on weights generated in the native layout.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import evalsuite
from evalsuite.errors import ConfigError, ModelLoadError
from evalsuite.models.eva_native import EvaClipConfig, build_eva_clip, resize_pos_embed
from helpers import SHARED_DATA

ORACLE = SHARED_DATA.parent / "reference" / "eva_tiny_oracle"
KEYS = SHARED_DATA.parent / "reference" / "eva_checkpoint_keys"


def tiny_config(image_size=28, postnorm=False, rms=True, qkv_bias=False) -> dict:
    return {
        "embed_dim": 24,
        "vision_cfg": {"image_size": image_size, "layers": 2, "width": 32, "head_width": 16, "mlp_ratio": 5,
                       "patch_size": 14, "eva_model_name": "eva-clip-8b-14-x", "drop_path_rate": 0,
                       "qkv_bias": qkv_bias, "xattn": True, "postnorm": postnorm, "fusedLN": False,
                       "use_rms_norm": rms},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2,
                     "xattn": False, "fusedLN": False},
    }


def random_native_state_dict(cfg: dict, seed: int = 0) -> dict:
    """Every tensor random (so every term matters), in upstream's CustomCLIP layout."""
    model = build_eva_clip(EvaClipConfig.from_dict(cfg, "test"), meta=False)
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if k == "text.attn_mask":
            continue
        scale = 1.0 if ("norm" in k or "ln_" in k) and k.endswith("weight") else 0.05
        base = 1.0 if scale == 1.0 else 0.0
        sd[k] = base + scale * torch.randn(v.shape, generator=gen) if v.dim() else torch.tensor(4.1)
    return sd


# --- independent reference of the upstream computation ---------------------------------------------------------

def _rms(x, w, eps=1e-6):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _mha(x, qkv_w, qkv_b, proj_w, proj_b, heads, causal=False):
    b, n, c = x.shape
    qkv = F.linear(x, qkv_w, qkv_b).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    att = (q @ k.transpose(-2, -1)) / math.sqrt(c // heads)
    if causal:
        att = att.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    out = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
    return F.linear(out, proj_w, proj_b)


def reference_image(sd, cfg, pixels):
    v = cfg["vision_cfg"]
    x = F.conv2d(pixels, sd["visual.patch_embed.proj.weight"], sd["visual.patch_embed.proj.bias"],
                 stride=v["patch_size"])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd["visual.cls_token"].expand(x.shape[0], -1, -1), x], 1) + sd["visual.pos_embed"]
    heads = v["width"] // v["head_width"]
    for i in range(v["layers"]):
        p = lambda n: sd[f"visual.blocks.{i}.{n}"]  # noqa: E731, B023 - called in this iteration
        attn = lambda h: _mha(h, p("attn.qkv.weight"), None, p("attn.proj.weight"), p("attn.proj.bias"), heads)  # noqa: E731, B023 - called in this iteration
        mlp = lambda h: F.linear(F.gelu(F.linear(h, p("mlp.fc1.weight"), p("mlp.fc1.bias"))),  # noqa: E731, B023 - called in this iteration
                                 p("mlp.fc2.weight"), p("mlp.fc2.bias"))  # noqa: B023 - called in this iteration
        if v["postnorm"]:
            x = x + _rms(attn(x), p("norm1.weight"))
            x = x + _rms(mlp(x), p("norm2.weight"))
        else:
            x = x + attn(_rms(x, p("norm1.weight")))
            x = x + mlp(_rms(x, p("norm2.weight")))
    x = _rms(x, sd["visual.norm.weight"])[:, 0]
    return F.linear(x, sd["visual.head.weight"])


def reference_text(sd, cfg, tokens):
    t = cfg["text_cfg"]
    x = sd["text.token_embedding.weight"][tokens] + sd["text.positional_embedding"][: tokens.shape[1]]
    ln = lambda h, n: F.layer_norm(h, (h.shape[-1],), sd[f"{n}.weight"], sd[f"{n}.bias"], 1e-5)  # noqa: E731
    for i in range(t["layers"]):
        p = f"text.transformer.resblocks.{i}."
        x = x + _mha(ln(x, p + "ln_1"), sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"],
                     sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"], t["heads"], causal=True)
        h = F.gelu(F.linear(ln(x, p + "ln_2"), sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"]))
        x = x + F.linear(h, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
    x = ln(x, "text.ln_final")
    return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ sd["text.text_projection"]


def save_config(tmp_path, cfg):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


TOKENS = torch.tensor([[49406, 320, 1125, 539, 320, 1929, 49407] + [0] * 70,
                       [49406, 320, 22697, 49407] + [0] * 73])


@pytest.mark.parametrize("postnorm", [False, True], ids=["prenorm-8B", "postnorm-18B"])
@pytest.mark.parametrize("layout", ["text.pt-in-module", "clip-layout.safetensors"])
def test_native_layouts_match_reference(tmp_path, postnorm, layout):
    cfg = tiny_config(postnorm=postnorm)
    sd = random_native_state_dict(cfg, seed=1)
    if layout == "text.pt-in-module":
        path = tmp_path / "ckpt.pt"
        torch.save({"module": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    else:
        path = tmp_path / "ckpt.safetensors"
        save_file({(k[5:] if k.startswith("text.") else k): v.contiguous() for k, v in sd.items()}, str(path))
    model = evalsuite.load_model(str(path), arch=save_config(tmp_path, cfg))
    pixels = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    want_img = F.normalize(reference_image(sd, cfg, pixels), dim=-1)
    want_txt = F.normalize(reference_text(sd, cfg, TOKENS), dim=-1)
    assert (model.encode_image(pixels) - want_img).abs().max() < 1e-5
    assert (model.encode_text(TOKENS) - want_txt).abs().max() < 1e-5
    assert model.encode_image(pixels).dtype == torch.float32


def test_bf16_loading_casts_every_weight(tmp_path):
    cfg = tiny_config()
    path = tmp_path / "ckpt.pt"
    torch.save(random_native_state_dict(cfg), path)
    model = evalsuite.load_model(str(path), arch=save_config(tmp_path, cfg), precision="bf16")
    assert {p.dtype for p in model.module.parameters()} == {torch.bfloat16}
    out = model.encode_image(torch.randn(1, 3, 28, 28))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("break_it,expect", [
    (lambda sd: sd.__setitem__("visual.blocks.0.attn.qkvv.weight", sd.pop("visual.blocks.0.attn.qkv.weight")),
     ["missing key(s): visual.blocks.0.attn.qkv.weight", "unexpected key(s): visual.blocks.0.attn.qkvv.weight"]),
    (lambda sd: sd.pop("text.ln_final.bias"), ["1 missing key(s): text.ln_final.bias"]),
    (lambda sd: sd.__setitem__("visual.extra.weight", torch.zeros(1)), ["1 unexpected key(s): visual.extra.weight"]),
    (lambda sd: sd.__setitem__("visual.head.weight", torch.zeros(3, 3)), ["visual.head.weight has shape (3, 3)"]),
])
def test_key_mismatches_are_errors_naming_the_keys(tmp_path, break_it, expect):
    cfg = tiny_config()
    sd = random_native_state_dict(cfg)
    break_it(sd)
    path = tmp_path / "ckpt.pt"
    torch.save(sd, path)
    with pytest.raises(ModelLoadError) as exc:
        evalsuite.load_model(str(path), arch=save_config(tmp_path, cfg))
    for text in expect:
        assert text in str(exc.value)


def test_pos_embed_is_resized_for_a_larger_model(tmp_path):
    sd = random_native_state_dict(tiny_config(image_size=28))  # 2x2 grid
    path = tmp_path / "ckpt.pt"
    torch.save(sd, path)
    model = evalsuite.load_model(str(path), arch=save_config(tmp_path, tiny_config(image_size=56)))  # 4x4 grid
    got = model.module.visual.pos_embed
    assert got.shape == (1, 17, 32)
    assert torch.equal(got, resize_pos_embed(sd["visual.pos_embed"], 16))
    assert torch.equal(got[:, 0], sd["visual.pos_embed"][:, 0])  # CLS kept
    assert any("pos_embed resized" in note for note in model.load_notes)


def test_unsupported_eva02_features_are_refused():
    cfg = tiny_config()
    cfg["vision_cfg"]["rope"] = True
    with pytest.raises(ConfigError, match=r"uses \['rope'\].*open_clip cards"):
        EvaClipConfig.from_dict(cfg, "cfg.json")


def test_checkpoint_without_arch_is_a_clear_error(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({}, path)
    with pytest.raises(Exception, match="needs --arch"):
        evalsuite.load_model(str(path))


# --- ../shared/reference ----------------------------------------------------------------------------------------

def _need(path):
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def test_shared_oracle_within_1e5():
    _need(ORACLE)
    model = evalsuite.load_model(str(ORACLE / "tiny-EVA-CLIP-8B.state_dict.safetensors"),
                                 arch=str(ORACLE / "tiny-EVA-CLIP-8B.json"))
    inputs = load_file(str(ORACLE / "tiny-EVA-CLIP-8B.inputs.safetensors"))
    outputs = load_file(str(ORACLE / "tiny-EVA-CLIP-8B.outputs.safetensors"))
    assert (model.encode_image(inputs["image"]) - outputs["image_features_normalized"]).abs().max() < 1e-5
    assert (model.encode_text(inputs["text"]) - outputs["text_features_normalized"]).abs().max() < 1e-5
    with torch.inference_mode():
        raw = model.module.encode_image(inputs["image"])
    assert (raw - outputs["image_features"]).abs().max() < 1e-5
    assert model.module.logit_scale.exp().item() == pytest.approx(outputs["logit_scale_exp"].item(), rel=1e-6)


def test_shared_oracle_pos_embed_224_to_448(tmp_path):
    _need(ORACLE)
    cfg = json.loads((ORACLE / "tiny-EVA-CLIP-8B.json").read_text())
    cfg["vision_cfg"]["image_size"] = 448
    model = evalsuite.load_model(str(ORACLE / "tiny-EVA-CLIP-8B.state_dict.safetensors"),
                                 arch=save_config(tmp_path, cfg))
    want = load_file(str(ORACLE / "tiny-EVA-CLIP-8B.pos_embed_224to448.safetensors"))["pos_embed_448"]
    assert (model.module.visual.pos_embed - want).abs().max() < 1e-5
    assert model.encode_image(torch.randn(1, 3, 448, 448)).shape == (1, 48)


@pytest.mark.parametrize("name", ["EVA-CLIP-8B", "EVA-CLIP-8B-plus", "EVA-CLIP-18B"])
def test_meta_built_architecture_matches_upstream_key_list(name):
    tsv = _need(KEYS / f"{name}.tsv")
    header = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in tsv.read_text().splitlines()
              if line.startswith("# config")}
    cfg = EvaClipConfig.from_dict(json.loads(header["# config"]), str(tsv))
    model = build_eva_clip(cfg, meta=True)
    ours = {k: tuple(v.shape) for k, v in model.named_parameters()}
    theirs = {}
    for line in tsv.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")[:2]
            theirs[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    assert ours == theirs
    total = sum(math.prod(s) for s in ours.values())
    assert f"total={total:,}" in tsv.read_text().replace(" ", "").replace("total=", "total=")


def test_native_vision_attention_uses_sdpa():
    """timm's Eva blocks take the fused scaled_dot_product_attention path (the CUDA flash/efficient kernels)."""
    model = build_eva_clip(EvaClipConfig.from_dict(tiny_config(), "test"), meta=False)
    flags = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    assert flags and all(flags)
