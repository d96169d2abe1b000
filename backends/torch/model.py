"""GPT in PyTorch: the same network as `core.model.reference`, as `torch.nn` modules.

Module attribute names are the parameter names of `core.model.params`, so `state_dict()` keys are the
checkpoint keys. Linear weights are stored (in_features, out_features) as the spec says; `linear`
below is the one place they are transposed for `F.linear`. Read this file beside
`backends/tinygrad/model.py`: they match line for line where the frameworks allow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.model.config import GPTConfig


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """y = x @ weight + bias, weight stored (in, out); F.linear wants (out, in), hence the .T."""
    return F.linear(x, weight.T, bias)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, dropout: float = 0.0) -> torch.Tensor:
    """softmax(q @ k.T / sqrt(head_size)) @ v for queries (B, nh, T, hs) over keys and values (B, nh, S, hs).

    torch's fused kernel (flash attention on CPU and GPU); tinygrad's `attention` spells it out."""
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=causal)


class Linear(nn.Module):
    def __init__(self, n_in: int, n_out: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out)) if bias else None

    def int8_(self) -> None:
        """Hold the weight as int8 (in, out) plus one float32 scale per output column (core/convert/quantize.py)."""
        quantize_(self, scale_size=self.weight.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None:  # int8: (x @ Q) * scale, the scale being constant along the summed axis
            y = linear(x, self.weight_int8.to(x.dtype), None) * self.weight_scale
            return y + self.bias if self.bias is not None else y
        return linear(x, self.weight, self.bias)


class Embedding(nn.Module):
    """A (n, n_embd) matrix read by row: token or position vectors, and the output head (`attend`)."""

    def __init__(self, n: int, n_embd: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, n_embd))

    def int8_(self) -> None:
        """Hold the matrix as int8 plus one float32 scale per row (core/convert/quantize.py)."""
        quantize_(self, scale_size=self.weight.shape[0])

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            return self.weight_int8[idx].float() * self.weight_scale[idx, None]  # (B, T) -> (B, T, n_embd)
        return F.embedding(idx, self.weight)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """x @ weight.T: (B, T, n_embd) -> (B, T, n). With int8, a row's scale multiplies its logit."""
        if self.weight is None:
            return (x @ self.weight_int8.T.to(x.dtype)) * self.weight_scale
        return x @ self.weight.T


def quantize_(module: nn.Module, scale_size: int) -> None:
    """Replace `module.weight` by buffers `weight_int8` (same shape, int8) and `weight_scale`, loaded later."""
    shape, device = module.weight.shape, module.weight.device
    module.weight = None  # no float copy kept: the int8 buffer is the weight now
    module.register_buffer("weight_int8", torch.zeros(shape, dtype=torch.int8, device=device))
    module.register_buffer("weight_scale", torch.ones(scale_size, device=device))


class LayerNorm(nn.Module):
    def __init__(self, n: int, bias: bool, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n))
        self.bias = nn.Parameter(torch.empty(n)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class KVCache:
    """Keys and values of every position seen so far, preallocated for the whole block.

    k and v are (B, n_head, block_size, head_size) per layer, written in place, so a decode step
    allocates nothing and its cost does not grow with the number of tokens generated.
    """

    def __init__(self, config: GPTConfig, batch_size: int, device: torch.device, dtype: torch.dtype):
        shape = (batch_size, config.n_head, config.block_size, config.head_size)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.pos = 0  # number of positions already written


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, config.bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, config.bias)
        self.n_head, self.dropout, self.causal = config.n_head, config.dropout, config.causal

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, start: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        # (B, T, C) -> (B, n_head, T, head_size)
        q, k, v = (a.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for a in (q, k, v))
        if cache is None:  # a full forward pass: each query sees the keys up to itself (all if not causal)
            dropout = self.dropout if self.training else 0.0
            y = attention(q, k, v, self.causal, dropout)
        else:  # write this step's keys and values at their positions, attend over everything so far
            end = start + T
            cache.k[layer][:, :, start:end] = k
            cache.v[layer][:, :, start:end] = v
            k, v = cache.k[layer][:, :, :end], cache.v[layer][:, :, :end]
            # A single new query may see every cached key; a prompt of T > 1 starting at 0 needs the
            # causal mask (is_causal aligns top-left, which is right only from position 0).
            y = attention(q, k, v, causal=T > 1)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, n_head, T, head_size) -> (B, T, C)
        return F.dropout(self.c_proj(y), self.dropout, self.training)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention probabilities (B, n_head, T, T), computed explicitly (for analysis)."""
        B, T, C = x.shape
        q, k, _ = self.c_attn(x).split(C, dim=2)
        q, k = (a.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for a in (q, k))
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.n_head)  # (B, n_head, T, T)
        if self.causal:
            future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        return scores.softmax(dim=-1)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, config.mlp_hidden, config.bias)
        self.c_proj = Linear(config.mlp_hidden, config.n_embd, config.bias)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.c_fc(x), approximate="tanh")  # GPT-2's GELU; torch's default is the erf form
        return F.dropout(self.c_proj(x), self.dropout, self.training)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.bias, config.layer_norm_eps)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, config.bias, config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, start: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, start)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = Embedding(config.vocab_size, config.n_embd)
        self.wpe = Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd, config.bias, config.layer_norm_eps)
        if not config.tie_embeddings:
            self.lm_head = Embedding(config.vocab_size, config.n_embd)  # weight (V, C), like wte

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, start: int = 0) -> torch.Tensor:
        """int tokens (B, T) -> logits (B, T, vocab_size). With a cache, positions begin at `start`."""
        B, T = tokens.shape
        positions = torch.arange(start, start + T, device=tokens.device)
        x = self.wte(tokens) + self.wpe(positions)  # (B, T, C)
        x = F.dropout(x, self.config.dropout, self.training)
        for i, block in enumerate(self.h):
            x = block(x, cache, i, start)
        x = self.ln_f(x)
        head = self.wte if self.config.tie_embeddings else self.lm_head
        return head.attend(x)  # (B, T, C) @ (C, V) -> (B, T, V)

    def attention_maps(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's attention weights (B, n_head, T, T) for a full forward pass."""
        T = tokens.shape[1]
        x = self.wte(tokens) + self.wpe(torch.arange(T, device=tokens.device))
        maps = []
        for block in self.h:
            maps.append(block.attn.weights(block.ln_1(x)))
            x = block(x)
        return maps
