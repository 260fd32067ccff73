"""The Hugging Face adapter on a tiny random-init CLIPModel saved to a folder (offline)."""

import json

import open_clip
import pytest
import torch
import torch.nn.functional as F

import evalsuite
from evalsuite.cli import main
from evalsuite.errors import ModelLoadError
from helpers import FEWER_THAN_EXPECTED


def clip_tokenizer_files(folder):
    """vocab.json + merges.txt for transformers' CLIPTokenizer, from open_clip's bundled BPE (no download)."""
    tok = open_clip.SimpleTokenizer()
    # open_clip spells the special tokens <start_of_text>/<end_of_text>; OpenAI's vocabulary (and HF's) uses <|...|>
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    (folder / "vocab.json").write_text(json.dumps({rename.get(k, k): v for k, v in tok.encoder.items()}))
    merges = sorted(tok.bpe_ranks, key=tok.bpe_ranks.get)
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")


@pytest.fixture(scope="module")
def hf_clip_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("hf-clip")
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         max_position_embeddings=77, vocab_size=49408),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(cfg).eval().save_pretrained(folder)
    clip_tokenizer_files(folder)
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3, "size": {"shortest_edge": 32}, "image_processor_type": "CLIPImageProcessor"}))
    return folder


def test_features_equal_transformers_own_forward(hf_clip_dir):
    from transformers import CLIPModel

    model = evalsuite.load_model(f"hf:{hf_clip_dir}")
    ref = CLIPModel.from_pretrained(hf_clip_dir).eval()
    pixels = torch.randn(3, 3, 32, 32)
    tokens = model.tokenize(["a photo of a cat.", "a diagram"])
    with torch.no_grad():
        want_img = F.normalize(ref.visual_projection(ref.vision_model(pixel_values=pixels).pooler_output), dim=-1)
        want_txt = F.normalize(ref.text_projection(ref.text_model(input_ids=tokens).pooler_output), dim=-1)
    assert (model.encode_image(pixels) - want_img).abs().max() < 1e-6
    assert (model.encode_text(tokens) - want_txt).abs().max() < 1e-6
    assert model.preprocess_description() == {"size": 32, "mean": [0.48145466, 0.4578275, 0.40821073],
                                              "std": [0.26862954, 0.26130258, 0.27577711],
                                              "interpolation": "bicubic", "resize_mode": "shortest"}


def test_tokens_equal_open_clip_tokenizer(hf_clip_dir):
    model = evalsuite.load_model(f"hf:{hf_clip_dir}")
    texts = ["a photo of a great white shark.", "itap of a {c}.".replace("{c}", "toilet paper"), "A Bad PHOTO!"]
    ours, theirs = model.tokenize(texts), open_clip.tokenize(texts)
    # HF pads with <|endoftext|>, open_clip with 0: the ids up to the first end-of-text token agree
    for a, b in zip(ours, theirs):
        end = int((b == 49407).nonzero()[0])
        assert torch.equal(a[: end + 1], b[: end + 1])


def test_cli_run_with_hf_folder(hf_clip_dir, cifar_like_root, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--model", f"hf:{hf_clip_dir}", "--tasks", "cifar10", "--data-root", str(cifar_like_root),
                 "--output-dir", str(out), "--workers", "0"]) == FEWER_THAN_EXPECTED
    manifest = json.loads(next(out.iterdir()).joinpath("run.json").read_text())
    assert manifest["model_card"]["adapter"] == "hf"


def test_remote_code_needs_a_card(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "evaclip_custom", "auto_map": {"AutoConfig": "configuration_evaclip.EvaCLIPConfig",
                                                     "AutoModel": "modeling_evaclip.EvaCLIPModel"}}))
    with pytest.raises(ModelLoadError, match="needs its own modelling code.*--trust-remote-code"):
        evalsuite.load_model(f"hf:{tmp_path}")


def test_hub_repo_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not found locally or in the Hugging Face cache"):
        evalsuite.load_model("hf:someone/clip-that-is-not-cached")


def test_eva_card_lends_trust_and_preprocessing():
    from evalsuite.models.loading import resolve_card

    card = resolve_card("hf:BAAI/EVA-CLIP-8B")
    assert card.adapter == "hf" and card.trust_remote_code and card.image_size == 224
    assert not resolve_card("hf:openai/clip-vit-base-patch32").trust_remote_code
