"""A KV cache of fixed slots with a position per row, for serving many requests at once (tinygrad).

The same job as `backends/torch/slots.py` (read its docstring first): S slots of keys and values,
a prompt written into one slot by `prefill`, one token per slot at that slot's own position by
`decode`. What differs is how tinygrad wants it: shapes that never change, so that one `TinyJit`
capture serves every step. So decode always runs all S slots, positions enter as a Tensor, and the
new keys are written with a mask (`where`) over the whole cache rather than at a Python index.
Prompts are padded to a few bucket lengths (powers of two), one jitted prefill per bucket; causal
attention keeps the padding from reaching the real positions, and whatever the padding writes past
the prompt is hidden by the decode mask until decode overwrites it. RoPE and grouped-query heads as in
torch: each row's query and key turned by that row's position, n_kv_head heads cached and repeated
for the query heads only when attending.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3

import numpy as np
from tinygrad import Tensor, TinyJit, dtypes, helpers

from backends.tinygrad.attention import attention
from backends.tinygrad.buffers import read, write
from backends.tinygrad.model import GPT, CausalSelfAttention, KVCache, repeat_kv
from backends.tinygrad.rope import rope, rotations
from core.model.params import check_servable


class SlotCache(KVCache):
    """`KVCache` with `slots` rows; `pos` is unused (each request keeps its own position)."""

    def __init__(self, net: GPT, slots: int, device: str):
        super().__init__(net.config, slots, device)
        self.slots = slots


def share_compile_cache() -> None:
    """Let any thread use tinygrad's on-disk compile cache. tinygrad 0.14 keeps one sqlite connection
    per process (`helpers.db_connection`), which sqlite3 lets only its opening thread use; a server loads
    the model in the main thread and compiles in its worker thread. Only one thread runs tinygrad at a
    time here, so one connection opened with check_same_thread=False is safe."""
    if getattr(helpers, "_db_connection_shared", False):
        return
    os.makedirs(os.path.dirname(helpers.CACHEDB), exist_ok=True)
    conn = sqlite3.connect(helpers.CACHEDB, timeout=60, isolation_level="IMMEDIATE", check_same_thread=False)
    with contextlib.suppress(sqlite3.OperationalError):  # as tinygrad opens it
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
    conn.execute("PRAGMA synchronous=NORMAL")
    helpers._db_connection, helpers._db_connection_shared = conn, True


def int_input(device: str, *shape: int) -> Tensor:
    """A realized int32 buffer that a jitted step reads and the host overwrites in place before each call."""
    return Tensor.zeros(*shape, dtype=dtypes.int32, device=device).contiguous().realize()


def bucket(length: int, block_size: int) -> int:
    """The padded prompt length: the next power of two from 16, at most block_size."""
    return min(block_size, max(16, 1 << (length - 1).bit_length()))


def prefill(net: GPT, cache: SlotCache, tokens: Tensor, slot: Tensor, last: Tensor) -> Tensor:
    """A padded prompt (1, Tb) written at positions 0..Tb-1 of slot `slot` (a (1,) Tensor);
    logits (1, V) of position `last` (a (1,) Tensor), the prompt's real last token."""
    Tb, block, S = tokens.shape[1], net.config.block_size, cache.slots
    x = net.embed(tokens)  # (1, Tb, C), positions 0..Tb-1
    here = (Tensor.arange(S) == slot).reshape(S, 1, 1, 1)  # the slot's rows of the cache
    for i, blk in enumerate(net.h):
        attn, h = blk.attn, blk.ln_1(x)
        C = h.shape[-1]
        q, k, v = attn.heads(h)  # (1, nh, Tb, hs), 2 x (1, n_kv, Tb, hs), RoPE at 0..Tb-1
        pad = (None, None, (0, block - Tb), None)  # (1, n_kv, Tb, hs) -> (1, n_kv, block, hs)
        cache.k[i].assign(here.where(k.pad(pad), cache.k[i]))
        cache.v[i].assign(here.where(v.pad(pad), cache.v[i]))
        # (1, nh, Tb, hs): the prompt attends within itself
        y = attention(q, repeat_kv(k, attn.n_head), repeat_kv(v, attn.n_head), causal=True)
        x = x + attn.c_proj(y.transpose(1, 2).reshape(1, Tb, C))
        x = x + blk.mlp(blk.ln_2(x))
    x = net.ln_f(x)
    x = (x * (Tensor.arange(Tb) == last).reshape(1, Tb, 1)).sum(1, keepdim=True)  # (1, 1, C) at `last`
    head = net.wte if net.config.tie_embeddings else net.lm_head
    logits = head.attend(x)[:, 0].contiguous()  # (1, V)
    # The logits do not read the cache (the prompt attends to its own k and v), so the writes must be
    # realized explicitly, inside this step: otherwise a jitted replay would never write the cache.
    Tensor.realize(logits, *cache.k, *cache.v)
    return logits


def decode(net: GPT, cache: SlotCache, tokens: Tensor, positions: Tensor) -> Tensor:
    """Tokens (S, 1) at positions (S,), one per slot, each row attending to its keys 0..pos; logits (S, V)."""
    S, block = tokens.shape[0], net.config.block_size
    x = net.wte(tokens)  # (S, 1, C)
    if net.wpe is not None:  # learned positions, each row's own; RoPE acts inside attention instead
        x = x + net.wpe(positions.reshape(S, 1))
    keys = Tensor.arange(block).reshape(1, block)
    at = (keys == positions.reshape(S, 1)).reshape(S, 1, block, 1)  # where each row's new key goes
    visible = (keys <= positions.reshape(S, 1)).reshape(S, 1, 1, block)  # what each row may attend to
    for i, blk in enumerate(net.h):
        attn, h = blk.attn, blk.ln_1(x)
        C = h.shape[-1]
        q, k, v = _row_heads(attn, h, positions)  # (S, nh, 1, hs), 2 x (S, n_kv, 1, hs)
        cache.k[i].assign(at.where(k, cache.k[i]))  # k broadcasts along the block axis
        cache.v[i].assign(at.where(v, cache.v[i]))
        k_all, v_all = repeat_kv(cache.k[i], attn.n_head), repeat_kv(cache.v[i], attn.n_head)  # (S, nh, block, hs)
        scores = (q @ k_all.transpose(-2, -1)) / math.sqrt(C // attn.n_head)  # (S, nh, 1, block)
        y = visible.where(scores, float("-inf")).softmax(-1) @ v_all  # (S, nh, 1, hs)
        x = x + attn.c_proj(y.transpose(1, 2).reshape(S, 1, C))
        x = x + blk.mlp(blk.ln_2(x))
    x = net.ln_f(x)
    head = net.wte if net.config.tie_embeddings else net.lm_head
    return head.attend(x)[:, 0].contiguous().realize()  # (S, V)


def _row_heads(attn: CausalSelfAttention, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Queries (S, nh, 1, hs), keys and values (S, n_kv, 1, hs) of one token per row (S, 1, C), RoPE at
    each row's own position (`attn.heads` turns a whole sequence from one start instead)."""
    S, _, C = x.shape
    hs = C // attn.n_head
    q, k, v = attn.c_attn(x).split([C, attn.kv_size, attn.kv_size], dim=2)  # (S, 1, C), 2 x (S, 1, kv_size)
    q = q.reshape(S, 1, attn.n_head, hs).transpose(1, 2)
    k, v = (a.reshape(S, 1, attn.n_kv_head, hs).transpose(1, 2) for a in (k, v))
    if attn.rope_theta is not None:  # (S, 1, 1) positions broadcast over heads
        cos, sin = rotations(positions.reshape(S, 1, 1), hs, attn.rope_theta)  # (S, 1, 1, hs/2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
    return q, k, v


class SlotServing:
    """The Model protocol's slot methods for `TinygradModel` (uses its `net`, `config` and `device`)."""

    def slot_start(self, n_slots: int) -> None:
        check_servable(self.config)
        share_compile_cache()  # a server calls the slot methods from its own worker thread
        self.slot_cache = SlotCache(self.net, n_slots, self.device)
        # The decode step's inputs, overwritten in place before each call.
        self._slot_fed, self._slot_pos = int_input(self.device, n_slots, 1), int_input(self.device, n_slots)
        self._slot_decode_jit = TinyJit(lambda t, p: decode(self.net, self.slot_cache, t, p))
        self._slot_prefills: dict[int, tuple] = {}  # bucket length -> its inputs and jitted step

    def slot_prefill(self, slot: int, tokens: np.ndarray) -> np.ndarray:
        T = len(tokens)
        Tb = bucket(T, self.config.block_size)
        if Tb not in self._slot_prefills:
            step = TinyJit(lambda t, s, last: prefill(self.net, self.slot_cache, t, s, last))
            self._slot_prefills[Tb] = (*(int_input(self.device, *shape) for shape in ((1, Tb), (1,), (1,))), step)
        fed, where, last, step = self._slot_prefills[Tb]
        padded = np.zeros((1, Tb), dtype=np.int32)
        padded[0, :T] = tokens
        write(fed, padded)
        write(where, np.array([slot], dtype=np.int32))
        write(last, np.array([T - 1], dtype=np.int32))
        return read(step(fed, where, last))[0]

    def slot_decode(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        R, S = len(tokens), self.slot_cache.slots  # every slot runs: one shape, one capture
        fed, pos = np.zeros((S, 1), dtype=np.int32), np.zeros(S, dtype=np.int32)
        fed[:R, 0], pos[:R] = tokens, positions
        write(self._slot_fed, fed)
        write(self._slot_pos, pos)
        return read(self._slot_decode_jit(self._slot_fed, self._slot_pos))[:R]
