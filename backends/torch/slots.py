"""A KV cache of fixed slots with a position per row, for serving many requests at once (torch).

`generate` moves a batch in lockstep: every row sits at the same position, so a new prompt cannot
join a batch that is already decoding. A server wants the opposite: S slots, each holding one
request's keys and values at its own length, a request joining a free slot whenever it arrives and
leaving when it is done. `prefill` writes one prompt into one slot; `decode` feeds one token to each
of the first `rows` slots at that row's own position, every row attending to its own keys 0..pos.

The cache is (S, n_kv_head, block_size, head_size) per layer, like `KVCache` (keys after RoPE); decode
attends with a mask over the keys up to the furthest row, so a row's result does not depend on how
long the other rows are. Every architecture the model has works here: learned positions are looked up
per row, RoPE turns each row's query and key by that row's own position, and grouped-query attention
stores n_kv_head heads and repeats them for the query heads only when attending.
`backends/tinygrad/slots.py` implements the same thing for tinygrad.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from backends.torch.model import GPT, CausalSelfAttention, KVCache, repeat_kv
from backends.torch.rope import rope, rotations


class SlotCache(KVCache):
    """`KVCache` with `slots` rows; `pos` is unused (each request keeps its own position)."""

    def __init__(self, net: GPT, slots: int):
        # ln_f's gain: a float parameter every model has (wpe is absent with RoPE, wte may be int8)
        super().__init__(net.config, slots, net.ln_f.weight.device, net.ln_f.weight.dtype)
        self.slots = slots


@torch.no_grad()
def prefill(net: GPT, cache: SlotCache, slot: int, tokens: torch.Tensor) -> torch.Tensor:
    """Write a prompt (T,) at positions 0..T-1 of slot `slot`; logits (V,) of its last position."""
    # A one-row view of the slot: the model's own cached forward pass writes straight into it.
    view = SimpleNamespace(k=[k[slot : slot + 1] for k in cache.k], v=[v[slot : slot + 1] for v in cache.v])
    return net(tokens[None], view, start=0)[0, -1]


def _row_heads(attn: CausalSelfAttention, x: torch.Tensor, positions: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries (R, nh, 1, hs), keys and values (R, n_kv, 1, hs) of one token per row (R, 1, C), RoPE at
    each row's own position (`attn.heads` turns a whole sequence from one start instead)."""
    R, _, C = x.shape
    hs = C // attn.n_head
    q, k, v = attn.c_attn(x).split([C, attn.kv_size, attn.kv_size], dim=2)  # (R, 1, C), 2 x (R, 1, kv_size)
    q = q.view(R, 1, attn.n_head, hs).transpose(1, 2)
    k, v = (a.view(R, 1, attn.n_kv_head, hs).transpose(1, 2) for a in (k, v))
    if attn.rope_theta is not None:  # (R, 1, 1) positions broadcast over heads
        cos, sin = rotations(positions.view(R, 1, 1), hs, attn.rope_theta)  # (R, 1, 1, hs/2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
    return q, k, v


def _attend(attn: CausalSelfAttention, x: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
            positions: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """One new token per row (R, 1, C) written at its row's position, attending over the row's keys."""
    R, _, C = x.shape
    q, k, v = _row_heads(attn, x, positions)  # (R, nh, 1, hs), 2 x (R, n_kv, 1, hs)
    rows = torch.arange(R, device=x.device)
    k_cache[rows, :, positions] = k[:, :, 0]  # (R, n_kv, hs) into (R, n_kv, block, hs) at (row, :, pos)
    v_cache[rows, :, positions] = v[:, :, 0]
    k_all, v_all = repeat_kv(k_cache, attn.n_head), repeat_kv(v_cache, attn.n_head)  # (R, nh, L, hs)
    y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=visible)  # (R, nh, 1, hs)
    return attn.c_proj(y.transpose(1, 2).reshape(R, 1, C))


@torch.no_grad()
def decode(net: GPT, cache: SlotCache, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Tokens (R,) at positions (R,) for slots 0..R-1 (R <= S); logits (R, V).

    Only the first R slots run, so a server that fills the lowest free slot first computes no more
    rows than the busiest moment needs; unused slots among them are fed anything at position 0."""
    R = tokens.shape[0]
    # Keys past the furthest row are never visible: attend over 0..L-1 only. Masked keys weigh exactly 0,
    # so a row's result does not depend on L (the tests compare every row with its own full pass).
    L = int(positions.max()) + 1
    x = net.wte(tokens[:, None])  # (R, 1, C)
    if net.wpe is not None:  # learned positions, each row's own; RoPE acts inside attention instead
        x = x + net.wpe(positions[:, None])
    # Row r sees keys 0..positions[r]: (R, 1, 1, L), broadcast over heads and the one query.
    visible = (torch.arange(L, device=tokens.device)[None, :] <= positions[:, None])[:, None, None, :]
    for i, blk in enumerate(net.h):
        x = x + _attend(blk.attn, blk.ln_1(x), cache.k[i][:R, :, :L], cache.v[i][:R, :, :L], positions, visible)
        x = x + blk.mlp(blk.ln_2(x))
    x = net.ln_f(x)
    head = net.wte if net.config.tie_embeddings else net.lm_head
    return head.attend(x)[:, 0]  # (R, 1, C) @ (C, V) -> (R, V)
