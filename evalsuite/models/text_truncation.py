"""Encode prompts cut to the batch's longest prompt instead of the full 77-token context.

open_clip-style text towers are causal and pool at the end-of-text token, so positions after it never influence
the pooled feature: dropping the all-padding tail of a batch changes nothing but the cost (ImageNet prompts average
about 10 tokens). open_clip's own ``encode_text`` insists on the full context, hence this forward; every adapter
checks at load time that it reproduces the full-length features before it is used (``ModelAdapter``).
"""

from __future__ import annotations

import torch
from torch import nn

POOLS_AT_EOT = ("argmax", "eos")


def pool_type(tower: nn.Module):
    return getattr(tower, "text_pool_type", getattr(tower, "pool_type", None))


def can_truncate(tower: nn.Module | None) -> bool:
    """An open_clip CLIP or TextTransformer with a causal mask, no appended class token, no padding mask and
    pooling at the end-of-text token."""
    needed = ("token_embedding", "positional_embedding", "transformer", "attn_mask", "ln_final", "text_projection")
    return (tower is not None and all(hasattr(tower, a) for a in needed) and tower.attn_mask is not None
            and getattr(tower, "cls_emb", None) is None and not getattr(tower, "use_pad_mask", False)
            and pool_type(tower) in POOLS_AT_EOT)


def trim_padding(tokens: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Drop the trailing columns that are padding in every row."""
    used = (tokens != pad_id).any(dim=0).nonzero()
    return tokens[:, : int(used.max()) + 1] if len(used) else tokens[:, :1]


def truncated_text_features(tower: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    from open_clip.transformer import text_global_pool

    length = tokens.shape[1]
    cast_dtype = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(tokens).to(cast_dtype) + tower.positional_embedding[:length].to(cast_dtype)
    x = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
    x = tower.ln_final(x)
    eos = getattr(tower, "text_eos_id", getattr(tower, "eos_id", None))
    x = text_global_pool(x, tokens, pool_type(tower), eos_token_id=eos)
    projection = tower.text_projection
    if projection is not None:
        x = projection(x) if isinstance(projection, nn.Linear) else x @ projection
    return x
