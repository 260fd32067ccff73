"""Encode prompts cut to the batch's longest prompt instead of the full 77-token context.

open_clip-style text towers are causal and pool at the end-of-text token, so positions after it never influence
the pooled feature: dropping the all-padding tail of a batch changes nothing but the cost (ImageNet prompts average
about 10 tokens). open_clip's own ``encode_text`` insists on the full context, hence this forward; every adapter
checks at load time that it reproduces the full-length features before it is used (``ModelAdapter``).

open_clip's blocks hand the causal mask to ``nn.MultiheadAttention`` as a float mask, which keeps it off its fused
path; where the blocks are open_clip's standard ones, attention runs here as ``scaled_dot_product_attention``
with ``is_causal`` instead (the same products; flash attention on a GPU, 1.15-1.2x the text tower on a CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
    mask = tower.attn_mask[:length, :length]
    x = causal_blocks(tower.transformer, x) if fused_causal_ok(tower.transformer, mask) else \
        tower.transformer(x, attn_mask=mask)
    x = tower.ln_final(x)
    eos = getattr(tower, "text_eos_id", getattr(tower, "eos_id", None))
    x = text_global_pool(x, tokens, pool_type(tower), eos_token_id=eos)
    projection = tower.text_projection
    if projection is not None:
        x = projection(x) if isinstance(projection, nn.Linear) else x @ projection
    return x


def fused_causal_ok(transformer: nn.Module, mask: torch.Tensor) -> bool:
    """open_clip's standard pre-norm blocks with a packed self-attention, batch first, and a plain causal mask;
    a block with hooks runs as a module, so the hooks fire."""
    from open_clip.transformer import ResidualAttentionBlock

    def standard(block: nn.Module) -> bool:
        attn = getattr(block, "attn", None)
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in (block, attn) if m is not None)
        return (type(block) is ResidualAttentionBlock and not hooked and isinstance(attn, nn.MultiheadAttention)
                and attn.batch_first and attn._qkv_same_embed_dim and attn.bias_k is None and not attn.add_zero_attn
                and not hasattr(block, "ln_1_kv"))

    causal = torch.ones(mask.shape, dtype=torch.bool, device=mask.device).triu(1)
    blocks = getattr(transformer, "resblocks", None)
    return (getattr(transformer, "batch_first", False) and blocks is not None and all(standard(b) for b in blocks)
            and torch.equal(torch.isinf(mask) & (mask < 0), causal) and not bool(mask[~causal].any()))


def causal_blocks(transformer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``transformer(x, attn_mask=causal)`` for blocks ``fused_causal_ok`` accepts, attention fused."""
    for block in transformer.resblocks:
        attn = block.attn
        batch, length, width = x.shape
        qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(batch, length, 3, attn.num_heads, width // attn.num_heads).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(batch, length, width)
        x = x + block.ls_1(attn.out_proj(mixed))
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x
