"""Causal self-attention's core in tinygrad: softmax(q @ k.T / sqrt(head_size)) @ v, laid out for a CPU.

The same numbers as `Tensor.scaled_dot_product_attention` (and as torch's), computed in kernels that
tinygrad runs fast on a CPU; model.py's `CausalSelfAttention` calls `attention`. Every choice here was
timed side by side against the plain code (tinygrad-cpu.md says how much each bought); fusion.FAST off
gives tinygrad's built-in attention.
"""

from __future__ import annotations

import math

from tinygrad import Tensor, UOp, dtypes
from tinygrad.helpers import TRAINING

from backends.tinygrad import fusion

SPLIT_FROM = 128  # sequence length from which causal `attention` splits its queries in two (measured at 256)


def attention(
    q: Tensor, k: Tensor, v: Tensor, causal: bool, dropout: float = 0.0, last_key: UOp | None = None
) -> Tensor:
    """softmax(q @ k.T / sqrt(head_size)) @ v for queries (B, nh, T, hs) over keys and values (B, nh, S, hs).

    tinygrad's `scaled_dot_product_attention` fuses the softmax into the second matmul, which then
    recomputes exp() for every one of the head_size outputs. `_attend` realizes the scores and their
    exponentials once each instead. A causal mask hides half of the scores; splitting the queries in
    two lets the first half skip the second half's keys altogether, a quarter of the work. Together
    about 6x faster than the built-in on a CPU (benchmarks/attention.py).

    `last_key` (a decode step's position) hides the keys after it: the caller passes the whole cache.
    """
    if last_key is not None:
        return _attend(q, k, v, None, dropout, last_key)
    if not fusion.FAST:
        return q.scaled_dot_product_attention(k, v, dropout_p=dropout, is_causal=causal)
    T = q.shape[2]
    if causal and isinstance(T, int) and T == k.shape[2] and T >= SPLIT_FROM:
        h = T // 2
        first = _attend(q[:, :, :h], k[:, :, :h], v[:, :, :h], 0, dropout)  # (B, nh, h, hs)
        second = _attend(q[:, :, h:], k, v, h, dropout)  # (B, nh, T - h, hs)
        return first.cat(second, dim=2)
    return _attend(q, k, v, 0 if causal else None, dropout)


def _attend(
    q: Tensor, k: Tensor, v: Tensor, first_query: int | None, dropout: float, last_key: UOp | None = None
) -> Tensor:
    """Attention with kernel boundaries; with `first_query`, causal for queries at positions first_query...
    over keys from position 0 (None: no mask); with `last_key`, keys after it hidden."""
    unmasked = _scores(q, k, transposed=last_key is None).contiguous() / math.sqrt(q.shape[-1])  # (B, nh, T, S)
    scores = unmasked
    if first_query is not None:  # query i sees keys 0..first_query + i
        scores = scores.const_like(True, dtypes.bool).triu(1 + first_query).where(float("-inf"), scores)
    if last_key is not None:
        scores = (Tensor.arange(k.shape[2]) > last_key).where(float("-inf"), scores)
    weights = (scores - scores.max(-1, keepdim=True).detach()).exp().contiguous()  # unnormalized softmax
    full = fusion.FAST and last_key is None  # a training step or a prefill, not a decode step
    if full:
        # d exp(s) / ds = exp(s): read from the stored weights. Left to itself, tinygrad recomputes the
        # exponentials inside the backward kernel of weights @ v, for every element (a baby-GPT layer's
        # kernel 3.8 -> 0.3 ms). The added term is zero (folded away) and carries the gradient; masked
        # scores get none, their weight being 0.
        weights = weights.detach() + weights.detach() * (unmasked - unmasked.detach())
    dropped = weights.dropout(dropout)  # on the probabilities: still divided by the sum of all the weights
    # The gradient of the weights, d(out) @ v.T, reads v across its rows: a transposed copy makes it an
    # outer-product kernel (fusion.py). Normalizing after the matmul divides (T, hs) numbers, not (T, S).
    mixed = fusion.with_transposed_input_gradient(dropped, v) if full and TRAINING else dropped @ v
    return (mixed / weights.sum(-1, keepdim=True)).contiguous()  # (B, nh, T, hs)


def _scores(q: Tensor, k: Tensor, transposed: bool) -> Tensor:
    """q @ k.T (B, nh, T, S). With `transposed`, computed from a copy of the keys laid out (B, nh, hs, S):
    read from k itself, each score is a dot product along head_size (scalar loads here), from the copy a
    row of scores is an outer-product step along S. Gradients still flow through q @ k.T (they read k
    and q along their rows as they are). Not for a decode step, which would copy the whole cache."""
    if not (transposed and fusion.FAST):
        return q @ k.transpose(-2, -1)
    y = q.detach() @ k.detach().transpose(-2, -1).contiguous()  # (B, nh, T, hs) @ (B, nh, hs, S)
    z = q @ k.transpose(-2, -1)
    return y + (z - z.detach())  # the value of y, the gradients of z
