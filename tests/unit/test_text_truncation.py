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
