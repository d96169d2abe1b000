"""Causal self-attention alone, over a grid of (batch B, heads H, length T, head size D).

Per framework, three ways to compute softmax(q @ k.T / sqrt(D)) @ v with a causal mask:

- fused: the framework's own kernel, torch's `F.scaled_dot_product_attention` and tinygrad's
  `Tensor.scaled_dot_product_attention`;
- naive: matmul, mask, softmax, matmul, written out as in nanoGPT's slow path;
- ours (tinygrad only): `backends.tinygrad.attention.attention`, the naive path with kernel boundaries
  after the scores and after the exponentials, the normalisation moved after the second matmul, and
  from 128 positions the causal queries split in two halves (the first skips the second's keys).
  torch's model calls the fused kernel, so it has no third path.

Forward alone (no gradients kept) and forward + backward (gradients of q, k, v for a fixed random
upstream gradient). tinygrad runs each variant under `TinyJit`; its compile time is the warm-up.
Figures: calls per second and tokens (B * T) per second, median of interleaved repetitions.
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks.common import interleave, torch_sync
from core.model.config import GPTConfig

Shape = tuple[int, int, int, int]  # (B, H, T, D)


def grid(config: GPTConfig, quick: bool) -> list[Shape]:
    """The shapes measured: the model's own attention (batch 8) in --quick, a grid around it otherwise."""
    H, T, D = config.n_head, config.block_size, config.head_size
    if quick:
        return [(8, H, T, D)]
    shapes = {(b, H, t, d) for b in (1, 8) for t in (max(1, T // 4), T) for d in (D, 2 * D)}
    return sorted(shapes | {(8, 2 * H, T, D)})


def _inputs(shape: Shape, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape, dtype=np.float32) for _ in range(4)]  # q, k, v, upstream gradient


# ---- torch


def torch_variants(shape: Shape, device: str, backward: bool) -> dict[str, callable]:
    import torch
    import torch.nn.functional as F

    dev = torch.device(device)
    q, k, v, g = (torch.from_numpy(a).to(dev) for a in _inputs(shape))
    T, D = shape[2], shape[3]
    future = torch.ones(T, T, dtype=torch.bool, device=dev).triu(1)

    def naive(q, k, v):
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)
        return scores.masked_fill(future, float("-inf")).softmax(-1) @ v

    def fused(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def run(fn):
        if not backward:

            def forward():
                with torch.no_grad():
                    fn(q, k, v)
                torch_sync(dev)

            return forward
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]

        def forward_backward():
            for t in leaves:
                t.grad = None
            fn(*leaves).backward(g)
            torch_sync(dev)

        return forward_backward

    return {"torch fused": run(fused), "torch naive": run(naive)}


# ---- tinygrad


def tinygrad_variants(shape: Shape, device: str, backward: bool) -> dict[str, callable]:
    from tinygrad import Device, Tensor, TinyJit, dtypes

    import backends.tinygrad.attention as tg_attention
    from backends.tinygrad import fusion

    q, k, v, g = (Tensor(a, device=device).realize() for a in _inputs(shape))
    T, D = shape[2], shape[3]

    def naive(q, k, v):
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)
        future = Tensor.ones(T, T, dtype=dtypes.bool, device=device).triu(1)
        return future.where(float("-inf"), scores).softmax(-1) @ v

    def fused(q, k, v):
        return q.scaled_dot_product_attention(k, v, is_causal=True)

    def ours(q, k, v):
        fast, fusion.FAST = fusion.FAST, True  # measured even where GPT_TINYGRAD_FAST=0 turned it off
        try:
            return tg_attention.attention(q, k, v, causal=True)
        finally:
            fusion.FAST = fast

    def run(fn):
        if not backward:
            step = TinyJit(lambda q, k, v: fn(q, k, v).realize())
        else:

            def forward_backward(q, k, v):
                out = fn(q, k, v)
                grads = (out * g).sum().gradient(q, k, v)
                Tensor.realize(out, *grads)
                return out

            step = TinyJit(forward_backward)

        def call():
            step(q, k, v)
            Device[device].synchronize()

        return call

    return {"tinygrad fused": run(fused), "tinygrad naive": run(naive), "tinygrad ours": run(ours)}


def run(frameworks: dict[str, str], shapes: list[Shape], repeats: int, log) -> list[dict]:
    """`frameworks` maps "torch"/"tinygrad" to a device. One row per shape, variant and direction."""
    makers = {"torch": torch_variants, "tinygrad": tinygrad_variants}
    rows = []
    for shape in shapes:
        B, H, T, D = shape
        for backward in (False, True):
            log(f"attention B={B} H={H} T={T} D={D} {'forward+backward' if backward else 'forward'}")
            variants = {}
            for name, device in frameworks.items():
                variants.update(makers[name](shape, device, backward))
            # tinygrad: call 0 runs eagerly (compiles), call 1 captures the JIT; both are warm-up.
            warmup = {name: 3 if name.startswith("tinygrad") else 2 for name in variants}
            timings = interleave(variants, repeats, warmup, log)
            for name, timing in timings.items():
                framework, path = name.split(" ", 1)
                rows.append(
                    {
                        "B": B,
                        "H": H,
                        "T": T,
                        "D": D,
                        "direction": "forward+backward" if backward else "forward",
                        "framework": framework,
                        "path": path,
                        **timing.as_dict(),
                        "calls_per_s": round(1 / timing.median_s, 3),
                        "tokens_per_s": round(B * T / timing.median_s, 1),
                    }
                )
    return rows
