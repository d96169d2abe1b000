"""Rotary position embeddings (RoPE, Llama's positions) in PyTorch: queries and keys turned by their
positions' angles. Read beside `backends/tinygrad/rope.py` and `core.model.reference.rope`."""

from __future__ import annotations

import torch


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary position embedding of x (B, nh, T, hs) at `positions` (T,): pairs (i, i + hs/2) turned by
    position * theta**(-2i/hs), Hugging Face Llama's layout (core.model.reference.rope)."""
    D = x.shape[-1]
    inverse_frequency = theta ** (-torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D)  # (hs/2,)
    angle = positions.float()[:, None] * inverse_frequency[None, :]  # (T, hs/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    first, second = x[..., : D // 2], x[..., D // 2 :]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)
