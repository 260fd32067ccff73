"""Precision modes mean one thing for every adapter: fp32; amp_fp16 / amp_bf16 = fp32 weights under autocast
(CLIP_benchmark's --amp); fp16 / bf16 = weights cast (the residual streams are half).
Checked on the native EVA tower (timm Eva + open_clip text) and an open_clip CLIP, on a CPU (autocast runs
there too when asked), with the features of the amp modes against fp32 within measured tolerances."""

import pytest
import torch
from test_eva_native import TOKENS, random_native_state_dict, save_config, tiny_config

import evalsuite
from evalsuite.errors import UserInputError
from evalsuite.models.base import autocast_dtype, resolve_precision, weight_dtype
from evalsuite.models.card import ModelCard

MODES = ("fp32", "amp_fp16", "amp_bf16", "fp16", "bf16")
HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}
# measured on these tiny towers on a CPU (max |diff| of the L2-normalised features vs fp32), tolerance about 2x:
# amp_fp16 2.5e-4 / 3.6e-4 image (native / open_clip), 4.0e-4 / 4.8e-4 text; amp_bf16 1.7e-3 / 2.2e-3 image,
# 4.4e-3 / 3.2e-3 text (the cast modes: fp16 4e-4 to 7.7e-4, bf16 2.6e-3 to 3.3e-3)
AMP_TOLERANCE = {"amp_fp16": 1e-3, "amp_bf16": 1e-2}


@pytest.fixture(scope="module")
def native_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("native")
    cfg = tiny_config()
    torch.save(random_native_state_dict(cfg), folder / "ckpt.pt")
    return str(folder / "ckpt.pt"), save_config(folder, cfg)


def load(kind, mode, native_checkpoint, tiny_model_dir):
    if kind == "native":
        path, arch = native_checkpoint
        return evalsuite.load_model(path, arch=arch, device="cpu", precision=mode)
    return evalsuite.load_model(f"local-dir:{tiny_model_dir}", device="cpu", precision=mode)


def towers(model, kind):
    """(first vision block, first text block): their outputs are the residual streams."""
    m = model.module
    if kind == "native":
        return m.visual.blocks[0], m.text.transformer.resblocks[0]
    return m.visual.transformer.resblocks[0], m.transformer.resblocks[0]


def stream_dtypes(model, kind, pixels):
    seen = {}

    def record(name):
        def hook(module, args, out):
            seen.setdefault(name, out.dtype)  # returns None: the output is left as it is
        return hook

    hooks = [block.register_forward_hook(record(name)) for name, block in zip(("vision", "text"), towers(model, kind))]
    try:
        image = model.encode_image(pixels)
        text = model.encode_text(TOKENS)
    finally:
        for h in hooks:
            h.remove()
    return seen, image, text


def expected_streams(kind: str, mode: str) -> dict:
    """Cast modes: half everywhere. Autocast modes: whatever the architecture does under autocast with fp32
    weights, as in CLIP_benchmark --amp: timm's Eva concatenates the fp32 class token, so its vision stream is
    fp32; open_clip's ViT casts its class and position embeddings to the patch embedding's dtype (half under
    autocast); the text streams start from an fp32 embedding lookup and stay fp32."""
    if mode in HALF:
        return {"vision": HALF[mode], "text": HALF[mode]}
    vision = HALF[mode[4:]] if kind == "open_clip" and mode.startswith("amp_") else torch.float32
    return {"vision": vision, "text": torch.float32}


@pytest.mark.parametrize("kind", ["native", "open_clip"])
def test_each_mode_holds_its_weights_and_streams_in_the_right_dtype(kind, native_checkpoint, tiny_model_dir):
    size = 28 if kind == "native" else 32
    pixels = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    reference = None
    for mode in MODES:
        model = load(kind, mode, native_checkpoint, tiny_model_dir)
        assert model.precision_mode == mode
        weights = {p.dtype for p in model.module.parameters() if p.is_floating_point()}
        assert weights == {HALF.get(mode, torch.float32)}, mode
        seen, image, text = stream_dtypes(model, kind, pixels)
        assert seen == expected_streams(kind, mode), mode
        assert image.dtype == text.dtype == torch.float32  # features always leave as float32
        if mode == "fp32":
            reference = image, text
        elif mode in AMP_TOLERANCE:
            assert (image - reference[0]).abs().max() < AMP_TOLERANCE[mode], mode
            assert (text - reference[1]).abs().max() < AMP_TOLERANCE[mode], mode
            assert (image - reference[0]).abs().max() > 0  # autocast really ran in half precision


def test_mode_helpers_and_resolution():
    assert [weight_dtype(m) for m in MODES] == [torch.float32, torch.float32, torch.float32, torch.float16,
                                                torch.bfloat16]
    assert [autocast_dtype(m) for m in MODES] == [None, torch.float16, torch.bfloat16, None, None]
    card = ModelCard(name="x", adapter="open_clip", architecture="ViT-B-32", precision="amp_fp16")
    assert resolve_precision(card, torch.device("cpu"), None) == "fp32"  # CPU: fp32 unless asked
    assert resolve_precision(card, torch.device("cuda"), None) == "amp_fp16"
    assert resolve_precision(card, torch.device("cuda"), "fp16") == "fp16"
    with pytest.raises(UserInputError, match="expected one of"):
        resolve_precision(card, torch.device("cpu"), "half")


def test_eva_cards_default_to_clip_benchmarks_protocol():
    from evalsuite.models.card import all_cards

    cards = all_cards()
    eva = [c for name, c in cards.items() if name.startswith("EVA")]
    assert len(eva) == 10 and {c.precision for c in eva} == {"amp_fp16"}
    # no unsourced "paper numbers were made"
    assert all("made" not in c.notes.split("precision")[-1][:120] for c in eva)
