"""Name the job of each kernel of a tinygrad training or decode step, from its shapes and its FLOPs.

tinygrad's kernels carry generated names (`r_128_32_2_4_3_128_4`), not the layer they came from. But
every matmul of a GPT has a known signature: a linear layer (n_in -> n_out) over N token positions
costs 2 * N * n_in * n_out FLOPs in each of its three kernels, and they differ by what they write:
the forward pass writes N x n_out numbers, the input gradient N x n_in, the weight gradient n_in x
n_out (or k partial sums of it, each over N / k positions). Attention is recognised by its score
matrices (T x S per head), the output head and cross-entropy by their N x vocab logits, embedding
and optimizer kernels by writing a parameter-sized buffer with few FLOPs per number. A matmul's
kernel often fuses a little elementwise work (a bias, an activation), so FLOPs are matched within a
factor of 0.9 to 2.

The two passes are told apart by order: kernels run forward first, and the first output-head
gradient marks the start of the backward pass. A (C, C) projection's forward pass and its input
gradient have the same signature, so this order is what separates them. Where several layers'
FLOPs match, the closest is taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.model.config import GPTConfig

GROUPS = (
    "matmuls forward",
    "matmuls input gradients",
    "matmuls weight gradients",
    "LM head forward",
    "LM head gradients",
    "softmax and cross-entropy",
    "attention",
    "LayerNorm, GELU, residuals, biases",
    "embeddings and their gradients",
    "AdamW and clipping",
)


@dataclass(frozen=True)
class Kernel:
    """One kernel launch: its name, estimated FLOPs, the element counts of what it writes and of every
    buffer it touches, and its measured seconds."""

    name: str
    flops: int
    out_numel: int
    numels: tuple[int, ...]
    seconds: float


def _matmuls(config: GPTConfig) -> dict[str, tuple[int, int]]:
    """(n_in, n_out) of every linear layer in a block, and of the output head."""
    C, H = config.n_embd, config.mlp_hidden
    return {
        "c_attn": (C, 3 * C),
        "attn.c_proj": (C, C),
        "c_fc": (C, H),
        "mlp.c_proj": (H, C),
        "head": (C, config.vocab_size),
    }


def _near(flops: int, expected: int) -> bool:
    return expected > 0 and 0.9 * expected <= flops <= 2.0 * expected


def classify(kernels: list[Kernel], config: GPTConfig, batch: int, seq: int, keys: int) -> list[str]:
    """The group (one of GROUPS) of each kernel of one step over `batch` x `seq` new positions that attend
    to `keys` positions (seq == keys in training; seq == 1 in a decode step)."""
    N, V, C, nh = batch * seq, config.vocab_size, config.n_embd, config.n_head
    params = _parameter_numels(config)
    half, scores = seq // 2, batch * nh * seq * keys
    attention_numels = {scores, batch * nh * half * half, batch * nh * (seq - half) * keys}  # scores, split scores
    if seq != keys:  # a decode step reads the KV cache (in training that size is N x C, every activation's)
        attention_numels.add(batch * nh * config.block_size * config.head_size)
    from backends.tinygrad.fusion import GRADIENT_CHUNK  # large weight gradients: partial sums over chunks

    chunks = N // GRADIENT_CHUNK if N % GRADIENT_CHUNK == 0 else 0
    groups, backward = [], False
    for k in kernels:
        group = None
        # Closest FLOP count first: with the factor-2 tolerance, small layers can match more than one.
        by_closeness = sorted(
            _matmuls(config).items(), key=lambda kv: abs(math.log(max(k.flops, 1) / (2 * N * kv[1][0] * kv[1][1])))
        )
        for name, (n_in, n_out) in by_closeness:
            if not _near(k.flops, 2 * N * n_in * n_out):
                continue
            head = name == "head"
            # (in, out) weights, or the head's (V, C); or in the backward pass, partial sums of a weight's
            # gradient over chunks of positions (which, unlike an input gradient, read no weight)
            partials = backward and n_in * n_out not in k.numels and k.out_numel == chunks * n_in * n_out
            if k.out_numel == n_in * n_out or partials:
                group, backward = ("LM head gradients" if head else "matmuls weight gradients"), True
            elif k.out_numel == N * n_in and (backward or head):
                group, backward = ("LM head gradients" if head else "matmuls input gradients"), True
            elif k.out_numel == N * n_out:
                group = "LM head forward" if head else "matmuls forward"
            if group:
                break
        if group is None:
            few_flops = k.flops <= 64 * max(k.out_numel, 1)
            if attention_numels & set(k.numels) and N * V not in k.numels:
                group = "attention"
            elif N * V in k.numels:
                group = "softmax and cross-entropy"
            elif k.out_numel in (V * C, config.block_size * C) and k.flops < 64 * k.out_numel and not backward:
                group = "embeddings and their gradients"
            elif backward and few_flops and k.out_numel in params and chunks * k.out_numel in k.numels:
                group = "matmuls weight gradients"  # the sum of a weight gradient's partial sums
            elif backward and (k.out_numel in params or k.out_numel == 1) and few_flops:
                group = "AdamW and clipping"
            elif backward and k.out_numel in (V * C, config.block_size * C):
                group = "embeddings and their gradients"
            else:
                group = "LayerNorm, GELU, residuals, biases"
        groups.append(group)
    return groups


def _parameter_numels(config: GPTConfig) -> set[int]:
    from core.model.params import param_shapes

    return {int(_prod(shape)) for shape in param_shapes(config).values()}


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


def summarize(kernels: list[Kernel], groups: list[str]) -> list[dict]:
    """One row per group: kernel count, milliseconds, share of the kernel time, GFLOP/s."""
    total = sum(k.seconds for k in kernels) or 1.0
    rows = []
    for group in GROUPS:
        mine = [k for k, g in zip(kernels, groups) if g == group]
        if not mine:
            continue
        seconds, flops = sum(k.seconds for k in mine), sum(k.flops for k in mine)
        rows.append(
            {
                "group": group,
                "kernels": len(mine),
                "ms": round(1e3 * seconds, 2),
                "share": round(seconds / total, 4),
                "gflops": round(flops / seconds / 1e9, 2) if seconds else None,
            }
        )
    return rows
