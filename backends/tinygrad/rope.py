"""Rotary position embeddings (RoPE, Llama's positions) in tinygrad: the angles' cos and sin, and the
rotation of queries and keys by them. Read beside `backends/torch/rope.py` and `core.model.reference.rope`."""

from __future__ import annotations

import functools
import math

import numpy as np
from tinygrad import Tensor

from core.model import reference


def rotations(positions: Tensor, head_size: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin (..., hs/2) of the RoPE angles position * theta**(-2i/hs) at `positions` (...)."""
    exponents = Tensor.arange(0, head_size, 2) * (-math.log(theta) / head_size)
    inverse_frequency = exponents.exp()  # (hs/2,)
    angle = positions.float().unsqueeze(-1) * inverse_frequency  # (..., hs/2)
    return angle.cos(), angle.sin()


@functools.cache
def rotation_table(length: int, head_size: int, theta: float, device: str) -> tuple[Tensor, Tensor]:
    """`rotations` of positions 0 .. length-1, computed once and kept in memory (outside the model, so
    they are never parameters). Computed in the step instead, tinygrad fuses their sines and cosines
    into the attention kernels of the backward pass, recomputing them for every element there even when
    they are stored (being functions of constants). Profiled here (benchmarks/profile_tinygrad.py's
    kernel timing, nanoGPT's baby GPT with RoPE): a training step 156 ms against 85 with learned positions;
    with the table and the rotated q and k stored, 82 (a Llama-shaped baby: 497 -> 130-160 ms)."""
    cos, sin = reference.rotations(np.arange(length), head_size, theta)  # (length, hs/2)
    return tuple(Tensor(a.astype(np.float32), device=device).realize() for a in (cos, sin))


def rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary position embedding of x (B, nh, T, hs) by the `rotations` (T, hs/2) of its positions: pairs
    (i, i + hs/2) turned by their angle, Hugging Face Llama's layout (core.model.reference.rope)."""
    D = x.shape[-1]
    cos, sin = cos.cast(x.dtype), sin.cast(x.dtype)
    first, second = x[..., : D // 2], x[..., D // 2 :]
    return (first * cos - second * sin).cat(second * cos + first * sin, dim=-1)
