"""Prompts cut to the batch's longest prompt give the full-context features (checked per adapter at load)."""

import torch

from evalsuite.models.loading import load_model, resolve_card
from evalsuite.models.text_truncation import can_truncate, trim_padding


def test_trim_padding_keeps_the_longest_row():
    tokens = torch.tensor([[5, 9, 0, 0, 0], [5, 7, 8, 9, 0]])
    assert trim_padding(tokens).tolist() == [[5, 9, 0, 0], [5, 7, 8, 9]]


def test_open_clip_adapter_truncates_exactly(tiny_model_dir):
    model = load_model(resolve_card(f"local-dir:{tiny_model_dir}"), device="cpu")
    assert model.truncate_text
    tokens = model.tokenize([f"a photo of a {w}." for w in ("cat", "very large grey elephant", "x")] * 5)
    short = model.encode_text(tokens)
    model.truncate_text = False
    full = model.encode_text(tokens)
    assert torch.allclose(short, full, atol=1e-5)


def test_towers_that_pool_elsewhere_are_not_truncated(tiny_model_dir):
    model = load_model(resolve_card(f"local-dir:{tiny_model_dir}"), device="cpu")
    tower = model._text_tower()
    tower.text_pool_type = "last"  # the last position moves when the batch is cut: must not truncate
    assert not can_truncate(tower)


def test_texts_are_encoded_in_batches_of_similar_length_and_returned_in_order(tiny_model_dir):
    """Classes x templates mix long and short prompts; encoded in that order every batch pays for its longest
    prompt. Ordered by length, the padding is gone and each text keeps its own feature."""
    from evalsuite.encoding import Encoder, TextRequest
    from evalsuite.encoding.texts import TEXT_BATCH

    model = load_model(resolve_card(f"local-dir:{tiny_model_dir}"), device="cpu")
    templates = ("a photo of a {}.", "{}", "a blurry low resolution photo of the big {}.")
    texts = [t.format(f"class {c}" + " long" * (c % 7)) for c in range(800) for t in templates]  # 2,400 texts
    encoded_tokens = []
    encode = model.encode_text

    def spy(tokens):
        encoded_tokens.append(trim_padding(tokens).numel())
        return encode(tokens)

    model.encode_text = spy
    features = Encoder.for_model(model).texts(TextRequest(texts))
    model.encode_text = encode
    lengths = sorted(int((row != 0).sum()) for row in model.tokenize(texts))
    fewest = sum(len(lengths[i:i + TEXT_BATCH]) * lengths[i:i + TEXT_BATCH][-1]
                 for i in range(0, len(texts), TEXT_BATCH))
    assert sum(encoded_tokens) == fewest
    some = list(range(0, len(texts), 97))
    one_by_one = torch.cat([model.encode_text(model.tokenize([texts[i]])) for i in some])
    assert torch.allclose(features[some], one_by_one, atol=1e-5)


def test_the_fused_causal_attention_equals_open_clips_blocks(tiny_model_dir):
    from evalsuite.models.text_truncation import causal_blocks, fused_causal_ok

    tower = load_model(resolve_card(f"local-dir:{tiny_model_dir}"), device="cpu")._text_tower()
    mask = tower.attn_mask[:9, :9]
    assert fused_causal_ok(tower.transformer, mask)
    x = torch.randn(5, 9, tower.transformer.width)
    with torch.inference_mode():
        assert torch.allclose(causal_blocks(tower.transformer, x), tower.transformer(x, attn_mask=mask), atol=1e-6)
    not_causal = mask.clone()
    not_causal[3, 1] = float("-inf")
    assert not fused_causal_ok(tower.transformer, not_causal)
    assert not fused_causal_ok(tower.transformer, torch.zeros_like(mask))
    hook = tower.transformer.resblocks[-1].register_forward_hook(lambda *args: None)
    assert not fused_causal_ok(tower.transformer, mask)  # a hooked block must run, so its hook fires
    hook.remove()


def test_a_tokenizer_padding_each_call_to_its_longest_text_keeps_working():
    """An in-memory model's tokenizer may pad to the longest text of each call: those chunks cannot be merged
    and ordered, so they are encoded as they come, still in text order."""
    from evalsuite.encoding.texts import encode_texts, token_lengths

    class Model:
        def tokenize(self, texts):
            width = max(len(t) for t in texts)
            return torch.tensor([[ord(c) for c in t] + [0] * (width - len(t)) for t in texts])

        def encode_text(self, tokens):
            return token_lengths(tokens)[:, None].float()

    texts = ["a" * n for n in (3, 9, 1, 4, 7, 2, 8)]
    assert encode_texts(Model(), texts, batch=3)[:, 0].tolist() == [3, 9, 1, 4, 7, 2, 8]
    assert token_lengths(torch.tensor([[5, 0, 7, 0], [0, 0, 0, 0], [1, 2, 3, 4]])).tolist() == [3, 0, 4]


def test_a_transformer_of_another_shape_takes_its_own_forward():
    from evalsuite.models.text_truncation import fused_causal_ok

    class Other(torch.nn.Module):
        batch_first = True  # but no open_clip resblocks

    mask = torch.full((4, 4), float("-inf")).triu(1)
    assert not fused_causal_ok(Other(), mask)
