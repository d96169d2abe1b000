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

from backends.torch.rope import rope, rotations
from core.model.config import GPTConfig


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """y = x @ weight + bias, weight stored (in, out); F.linear wants (out, in), hence the .T."""
    return F.linear(x, weight.T, bias)


def repeat_kv(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """Keys or values (B, n_kv_head, S, hs) -> (B, n_head, S, hs): kv head j serves query heads j*g .. j*g+g-1."""
    return x.repeat_interleave(n_head // x.shape[1], dim=1) if x.shape[1] != n_head else x


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
    """LayerNorm, or RMSNorm (`rms`: no mean subtracted, never a bias), as config.norm says."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.rms = config.norm == "rmsnorm"
        self.weight = nn.Parameter(torch.empty(config.n_embd))
        self.bias = nn.Parameter(torch.empty(config.n_embd)) if config.bias and not self.rms else None
        self.eps = config.layer_norm_eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rms:
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class KVCache:
    """Keys and values of every position seen so far, preallocated for the whole block.

    k and v are (B, n_kv_head, block_size, head_size) per layer (keys after RoPE), written in place, so a
    decode step allocates nothing and its cost does not grow with the number of tokens generated.
    """

    def __init__(self, config: GPTConfig, batch_size: int, device: torch.device, dtype: torch.dtype):
        shape = (batch_size, config.kv_heads, config.block_size, config.head_size)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.pos = 0  # number of positions already written


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.kv_size = config.kv_heads * config.head_size  # width of the keys, and of the values
        self.c_attn = Linear(config.n_embd, config.n_embd + 2 * self.kv_size, config.bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, config.bias)
        self.n_head, self.n_kv_head = config.n_head, config.kv_heads
        self.dropout, self.causal = config.dropout, config.causal
        self.rope_theta = config.rope_theta if config.position == "rope" else None

    def heads(self, x: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (B, n_head, T, hs), keys and values (B, n_kv_head, T, hs) of x (B, T, C) at positions start..."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split([C, self.kv_size, self.kv_size], dim=2)  # (B, T, C), 2 x (B, T, kv_size)
        # (B, T, heads * hs) -> (B, heads, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k, v = (a.view(B, T, self.n_kv_head, C // self.n_head).transpose(1, 2) for a in (k, v))
        if self.rope_theta is not None:
            hs = C // self.n_head
            cos, sin = rotations(torch.arange(start, start + T, device=x.device), hs, self.rope_theta)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
        return q, k, v

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, start: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.heads(x, start)
        if cache is None:  # a full forward pass: each query sees the keys up to itself (all if not causal)
            dropout = self.dropout if self.training else 0.0
            y = attention(q, repeat_kv(k, self.n_head), repeat_kv(v, self.n_head), self.causal, dropout)
        else:  # write this step's keys and values at their positions, attend over everything so far
            end = start + T
            cache.k[layer][:, :, start:end] = k
            cache.v[layer][:, :, start:end] = v
            k, v = cache.k[layer][:, :, :end], cache.v[layer][:, :, :end]
            # A single new query may see every cached key; a prompt of T > 1 starting at 0 needs the
            # causal mask (is_causal aligns top-left, which is right only from position 0).
            y = attention(q, repeat_kv(k, self.n_head), repeat_kv(v, self.n_head), causal=T > 1)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, n_head, T, head_size) -> (B, T, C)
        return F.dropout(self.c_proj(y), self.dropout, self.training)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention probabilities (B, n_head, T, T), computed explicitly (for analysis)."""
        T = x.shape[1]
        q, k, _ = self.heads(x)
        k = repeat_kv(k, self.n_head)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, n_head, T, T)
        if self.causal:
            future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        return scores.softmax(dim=-1)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        width = 2 * config.mlp_hidden if self.swiglu else config.mlp_hidden  # swiglu: gate and up side by side
        self.c_fc = Linear(config.n_embd, width, config.bias)
        self.c_proj = Linear(config.mlp_hidden, config.n_embd, config.bias)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            gate, up = self.c_fc(x).chunk(2, dim=-1)  # 2 x (B, T, mlp_hidden)
            x = F.silu(gate) * up
        else:
            x = F.gelu(self.c_fc(x), approximate="tanh")  # GPT-2's GELU; torch's default is the erf form
        return F.dropout(self.c_proj(x), self.dropout, self.training)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, start: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, start)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = Embedding(config.vocab_size, config.n_embd)
        # Learned positions are a table added to the input; RoPE turns queries and keys inside attention.
        self.wpe = Embedding(config.block_size, config.n_embd) if config.position == "learned" else None
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config)
        if not config.tie_embeddings:
            self.lm_head = Embedding(config.vocab_size, config.n_embd)  # weight (V, C), like wte

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, start: int = 0) -> torch.Tensor:
        """int tokens (B, T) -> logits (B, T, vocab_size). With a cache, positions begin at `start`."""
        x = self.embed(tokens, start)  # (B, T, C)
        x = F.dropout(x, self.config.dropout, self.training)
        for i, block in enumerate(self.h):
            x = block(x, cache, i, start)
        x = self.ln_f(x)
        head = self.wte if self.config.tie_embeddings else self.lm_head
        return head.attend(x)  # (B, T, C) @ (C, V) -> (B, T, V)

    def embed(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token vectors (B, T, C) of tokens (B, T), plus learned position vectors for positions start..."""
        x = self.wte(tokens)
        if self.wpe is None:
            return x
        return x + self.wpe(torch.arange(start, start + tokens.shape[1], device=tokens.device))

    def attention_maps(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's attention weights (B, n_head, T, T) for a full forward pass."""
        x = self.embed(tokens)
        maps = []
        for block in self.h:
            maps.append(block.attn.weights(block.ln_1(x)))
            x = block(x)
        return maps
