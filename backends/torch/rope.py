"""Rotary position embeddings (RoPE, Llama's positions) in PyTorch: the angles' cos and sin, and the
rotation of queries and keys by them. Read beside `backends/tinygrad/rope.py` and `core.model.reference.rope`."""

from __future__ import annotations

import torch


def rotations(positions: torch.Tensor, head_size: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (..., hs/2) of the RoPE angles position * theta**(-2i/hs) at `positions` (...)."""
    exponents = -torch.arange(0, head_size, 2, device=positions.device, dtype=torch.float32) / head_size
    inverse_frequency = theta**exponents  # (hs/2,)
    angle = positions.float().unsqueeze(-1) * inverse_frequency  # (..., hs/2)
    return angle.cos(), angle.sin()


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of x (B, nh, T, hs) by the `rotations` (T, hs/2) of its positions: pairs
    (i, i + hs/2) turned by their angle, Hugging Face Llama's layout (core.model.reference.rope). (The
    tinygrad backend reads the angles from a table instead, for speed: its rope.py says why.)"""
    D = x.shape[-1]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    first, second = x[..., : D // 2], x[..., D // 2 :]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)
