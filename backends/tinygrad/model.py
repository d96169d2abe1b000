"""GPT in tinygrad: the same network as `core.model.reference`, as plain objects holding Tensors.

Attribute names are the parameter names of `core.model.params`, so `nn.state.get_state_dict(model)` keys
are the checkpoint keys. Linear weights are stored (in_features, out_features), which is what
`Tensor.linear` expects, so tinygrad needs no transposition at all. Read this file beside
`backends/torch/model.py`: they match line for line where the frameworks allow.

A few places differ from the obvious code because tinygrad is slow there on a CPU: `attention`,
`Embedding.__call__`, the kernel boundaries of `stored` and a linear layer's input gradient
(`_with_transposed_input_gradient`), and RoPE's angles read from a table (rope.py `rotation_table`).
`GPT_TINYGRAD_FAST=0` in the environment (or `FAST = False` here before a model is built) turns them
all off. The matmuls themselves are plain
`@`: gemm.py and matvec.py give their kernels options when tinygrad compiles them.
"""

from __future__ import annotations

import math
import os

from tinygrad import Context, Tensor, UOp, dtypes, nn
from tinygrad.helpers import TRAINING

from backends.tinygrad.rope import rope, rotation_table, rotations
from core.model.config import GPTConfig

FAST = os.environ.get("GPT_TINYGRAD_FAST", "1") != "0"
SPLIT_FROM = 128  # sequence length from which causal `attention` splits its queries in two (measured at 256)


def stored(x: Tensor, gradient: bool = False) -> Tensor:
    """A kernel boundary: `x` is computed once and stored (with `gradient`, its gradient too, in the
    backward pass) instead of being fused into each consumer. tinygrad fuses elementwise work such as
    gelu, layernorm or softmax into the matmul that reads it, which then recomputes it for every output
    element; on a CPU the stored version trains about 1.7x faster. Does nothing unless FAST."""
    if not FAST:
        return x
    return x.contiguous().contiguous_backward() if gradient else x.contiguous()


def repeat_kv(x: Tensor, n_head: int) -> Tensor:
    """Keys or values (B, n_kv_head, S, hs) -> (B, n_head, S, hs): kv head j serves query heads j*g .. j*g+g-1."""
    return x.repeat_interleave(n_head // x.shape[1], dim=1) if x.shape[1] != n_head else x


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
    if not FAST:
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
    scores = (q @ k.transpose(-2, -1)).contiguous() / math.sqrt(q.shape[-1])  # (B, nh, T, S)
    if first_query is not None:  # query i sees keys 0..first_query + i
        scores = scores.const_like(True, dtypes.bool).triu(1 + first_query).where(float("-inf"), scores)
    if last_key is not None:
        scores = (Tensor.arange(k.shape[2]) > last_key).where(float("-inf"), scores)
    weights = (scores - scores.max(-1, keepdim=True).detach()).exp().contiguous()  # unnormalized softmax
    # Normalizing after the second matmul divides (T, hs) numbers instead of (T, S).
    return ((weights.dropout(dropout) @ v) / weights.sum(-1, keepdim=True)).contiguous()  # (B, nh, T, hs)


class Linear:
    def __init__(self, n_in: int, n_out: int, bias: bool, device: str):
        self.weight = Tensor.empty(n_in, n_out, device=device)
        self.bias = Tensor.empty(n_out, device=device) if bias else None

    def int8_(self) -> None:
        """Hold the weight as int8 (in, out) plus one float32 scale per output column (core/convert/quantize.py)."""
        quantize_(self, scale_size=self.weight.shape[1])

    def __call__(self, x: Tensor) -> Tensor:
        if self.weight is None:  # int8: (x @ Q) * scale; the cast fuses into the matmul, which reads int8
            y = x.linear(self.weight_int8.cast(x.dtype)) * self.weight_scale
            return y + self.bias if self.bias is not None else y
        if FAST and TRAINING and isinstance(self.weight.device, str):
            return _with_transposed_input_gradient(x, self.weight, self.bias)
        return x.linear(self.weight, self.bias)  # weight (in, out)


def _with_transposed_input_gradient(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x @ weight + bias, whose input gradient dy @ weight.T reads a transposed copy of the weight.

    Stored (in, out), the weight is read along its rows by dy @ weight.T, the sum contiguous in both
    operands (a dot product per output, gemm.py's slower form); a transposed copy (out, in), a few
    hundred kilobytes a step, lets that sum run over its rows the way x @ weight does (12% faster
    training steps at nanoGPT's baby size, 5% at the reference size, measured side by side). The weight
    gradient still comes from `y`; `z - z.detach()` is exactly zero and folded away, so the forward pass
    computes nothing more: z only carries the input gradient.
    """
    y = x.detach().linear(weight, bias)
    z = x @ weight.detach().T.contiguous().T  # (B, T, in) @ (in, out), the weight stored (out, in)
    return y + (z - z.detach())


class LayerNorm:
    """LayerNorm, or RMSNorm (`rms`: no mean subtracted, never a bias), as config.norm says."""

    def __init__(self, config: GPTConfig, device: str):
        self.rms = config.norm == "rmsnorm"
        self.weight = Tensor.empty(config.n_embd, device=device)
        self.bias = Tensor.empty(config.n_embd, device=device) if config.bias and not self.rms else None
        self.eps = config.layer_norm_eps

    def __call__(self, x: Tensor) -> Tensor:
        if self.rms:
            y = x * (x.square().mean(-1, keepdim=True) + self.eps).rsqrt() * self.weight
        else:
            y = x.layernorm(eps=self.eps) * self.weight
        return stored(y + self.bias if self.bias is not None else y)


class Embedding:
    """A (n, n_embd) matrix read by row: token or position vectors, and the output head (`attend`)."""

    def __init__(self, n: int, n_embd: int, device: str):
        self.weight = Tensor.empty(n, n_embd, device=device)

    def int8_(self) -> None:
        """Hold the matrix as int8 plus one float32 scale per row (core/convert/quantize.py)."""
        quantize_(self, scale_size=self.weight.shape[0])

    def __call__(self, idx: Tensor) -> Tensor:
        if self.weight is None:
            # Dequantized to the scales' dtype: float32, or the compute dtype of a lower-precision model.
            return self.weight_int8[idx].cast(self.weight_scale.dtype) * self.weight_scale[idx].unsqueeze(-1)
        # (Single device only: with weights replicated over several devices the scatter-add gave wrong
        # gradients here, caught by tests/test_multidevice.py.)
        single = isinstance(self.weight.device, str)
        if FAST and TRAINING and single and _device_type(self.weight.device) in ("CPU", "AMD"):
            # Plain indexing backpropagates through a one-hot sum over the whole vocabulary (tokens x n x
            # n_embd); nn.Embedding with USE_ATOMICS scatter-adds the gradient rows instead (CPU, AMD only).
            with Context(USE_ATOMICS=1):
                return nn.Embedding.__call__(self, idx)
        return self.weight[idx]  # (B, T) -> (B, T, n_embd)

    def attend(self, x: Tensor) -> Tensor:
        """x @ weight.T: (B, T, n_embd) -> (B, T, n). With int8, a row's scale multiplies its logit."""
        if self.weight is None:
            return (x @ self.weight_int8.T.cast(x.dtype)) * self.weight_scale
        return x @ self.weight.T


def _device_type(device: str | tuple[str, ...]) -> str:
    """The kind of device: CPU for "CPU", "CPU:1" or a tuple of CPU devices (sharded tensors)."""
    return (device[0] if isinstance(device, tuple) else device).split(":")[0]


def quantize_(module: Linear | Embedding, scale_size: int) -> None:
    """Replace `module.weight` by `weight_int8` (same shape, int8) and `weight_scale`, loaded later."""
    shape, device = module.weight.shape, module.weight.device
    module.weight = None  # no float copy kept: the int8 tensor is the weight now
    module.weight_int8 = Tensor.empty(*shape, dtype=dtypes.int8, device=device)
    module.weight_scale = Tensor.empty(scale_size, device=device)


class KVCache:
    """Keys and values of every position seen so far, preallocated for the whole block.

    k and v are (B, n_kv_head, block_size, head_size) per layer (keys after RoPE), realized once and written in place
    with `assign`, so a decode step allocates nothing and keeps the same shapes at every position
    (which is what lets one `TinyJit` capture serve them all).
    """

    def __init__(self, config: GPTConfig, batch_size: int, device: str, dtype=dtypes.float32):
        shape = (batch_size, config.kv_heads, config.block_size, config.head_size)
        self.k = [
            Tensor.zeros(*shape, device=device, dtype=dtype).contiguous().realize() for _ in range(config.n_layer)
        ]
        self.v = [
            Tensor.zeros(*shape, device=device, dtype=dtype).contiguous().realize() for _ in range(config.n_layer)
        ]
        self.pos = 0  # number of positions already written


class CausalSelfAttention:
    def __init__(self, config: GPTConfig, device: str):
        self.kv_size = config.kv_heads * config.head_size  # width of the keys, and of the values
        self.c_attn = Linear(config.n_embd, config.n_embd + 2 * self.kv_size, config.bias, device)
        self.c_proj = Linear(config.n_embd, config.n_embd, config.bias, device)
        self.n_head, self.n_kv_head = config.n_head, config.kv_heads
        self.dropout, self.causal = config.dropout, config.causal
        self.rope_theta = config.rope_theta if config.position == "rope" else None
        self.block_size = config.block_size

    def heads(self, x: Tensor, start: int | UOp = 0) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (B, n_head, T, hs), keys and values (B, n_kv_head, T, hs) of x (B, T, C) at positions start..."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split([C, self.kv_size, self.kv_size], dim=2)  # (B, T, C), 2 x (B, T, kv_size)
        # (B, T, heads * hs) -> (B, heads, T, hs)
        q = q.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k, v = (a.reshape(B, T, self.n_kv_head, C // self.n_head).transpose(1, 2) for a in (k, v))
        if self.rope_theta is not None:
            hs = C // self.n_head
            if FAST and isinstance(x.device, str):  # rows start..start+T of the table (start symbolic in decode)
                table = rotation_table(self.block_size, hs, self.rope_theta, x.device)
                cos, sin = (a[start : start + T] for a in table)
            else:  # a symbolic start still serves one jitted decode step: the angles are built from constants
                cos, sin = rotations(Tensor.arange(T) + start, hs, self.rope_theta)
            q, k = stored(rope(q, cos, sin)), stored(rope(k, cos, sin))  # rotated once, not inside each score
        return q, k, v

    def __call__(self, x: Tensor, cache: KVCache | None = None, layer: int = 0, start: int | UOp = 0) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.heads(x, start)
        if cache is None:  # a full forward pass: each query sees the keys up to itself (all if not causal)
            y = attention(q, repeat_kv(k, self.n_head), repeat_kv(v, self.n_head), self.causal, self.dropout)
        else:  # write this step's keys and values at their positions, attend over everything so far
            end = start + T
            cache.k[layer][:, :, start:end].assign(k)
            cache.v[layer][:, :, start:end].assign(v)
            if isinstance(start, UOp) and T == 1 and FAST:
                # A jitted decode step (start symbolic) attends over the whole cache, the keys after its
                # position masked: a slice of symbolic length put integer divisions by it into every
                # index of the attention kernels, whose time then grew with each cached key (at batch 8,
                # 4.6 -> 7.6 ms a reference-size step by position 255; flat with the mask).
                k, v, last_key = cache.k[layer], cache.v[layer], start
            else:
                k, v, last_key = cache.k[layer][:, :, 0:end], cache.v[layer][:, :, 0:end], None
            # A single new query may see every cached key; a prompt of T > 1 starting at 0 needs the
            # causal mask (tinygrad aligns is_causal top-left, which is right only from position 0).
            y = attention(
                q, repeat_kv(k, self.n_head), repeat_kv(v, self.n_head), causal=T > 1, last_key=last_key
            )
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, n_head, T, head_size) -> (B, T, C)
        return self.c_proj(y).dropout(self.dropout)

    def weights(self, x: Tensor) -> Tensor:
        """Attention probabilities (B, n_head, T, T), computed explicitly (for analysis)."""
        T = x.shape[1]
        q, k, _ = self.heads(x)
        k = repeat_kv(k, self.n_head)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, n_head, T, T)
        if self.causal:
            future = Tensor.ones(T, T, dtype=dtypes.bool, device=x.device).triu(1)
            scores = future.where(float("-inf"), scores)
        return scores.softmax(-1)


class MLP:
    def __init__(self, config: GPTConfig, device: str):
        self.swiglu = config.mlp == "swiglu"
        width = 2 * config.mlp_hidden if self.swiglu else config.mlp_hidden  # swiglu: gate and up side by side
        self.c_fc = Linear(config.n_embd, width, config.bias, device)
        self.c_proj = Linear(config.mlp_hidden, config.n_embd, config.bias, device)
        self.dropout = config.dropout

    def __call__(self, x: Tensor) -> Tensor:
        if self.swiglu:
            gate, up = stored(self.c_fc(x), gradient=True).chunk(2, dim=-1)  # 2 x (B, T, mlp_hidden)
            x = stored(gate.silu() * up)
        else:
            # tinygrad's gelu is the tanh form, as GPT-2's. Its gradient is stored too: else GELU's backward fuses
            # into c_proj's input-gradient matmul, 3-4x that matmul's time (baby GPT training step 0.94x with it)
            x = stored(stored(self.c_fc(x), gradient=True).gelu(), gradient=True)
        return self.c_proj(x).dropout(self.dropout)


class Block:
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig, device: str):
        self.ln_1 = LayerNorm(config, device)
        self.attn = CausalSelfAttention(config, device)
        self.ln_2 = LayerNorm(config, device)
        self.mlp = MLP(config, device)

    def __call__(self, x: Tensor, cache: KVCache | None = None, layer: int = 0, start: int | UOp = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, start)
        return x + self.mlp(self.ln_2(x))


class GPT:
    def __init__(self, config: GPTConfig, device: str):
        self.config = config
        self.wte = Embedding(config.vocab_size, config.n_embd, device)
        # Learned positions are a table added to the input; RoPE turns queries and keys inside attention.
        self.wpe = Embedding(config.block_size, config.n_embd, device) if config.position == "learned" else None
        self.h = [Block(config, device) for _ in range(config.n_layer)]
        self.ln_f = LayerNorm(config, device)
        if not config.tie_embeddings:
            self.lm_head = Embedding(config.vocab_size, config.n_embd, device)  # weight (V, C), like wte

    def __call__(self, tokens: Tensor, cache: KVCache | None = None, start: int | UOp = 0) -> Tensor:
        """int tokens (B, T) -> logits (B, T, vocab_size). With a cache, positions begin at `start`,
        which may be a bound symbolic Variable so a jitted decode step serves every position."""
        x = self.embed(tokens, start)  # (B, T, C)
        x = x.dropout(self.config.dropout)
        for i, block in enumerate(self.h):
            x = block(x, cache, i, start)
        x = self.ln_f(x)
        head = self.wte if self.config.tie_embeddings else self.lm_head
        return head.attend(x)  # (B, T, C) @ (C, V) -> (B, T, V)

    def embed(self, tokens: Tensor, start: int | UOp = 0) -> Tensor:
        """Token vectors (B, T, C) of tokens (B, T), plus learned position vectors for positions start..."""
        x = self.wte(tokens)
        return x if self.wpe is None else x + self.wpe(Tensor.arange(tokens.shape[1]) + start)

    def attention_maps(self, tokens: Tensor) -> list[Tensor]:
        """Each layer's attention weights (B, n_head, T, T) for a full forward pass."""
        x = self.embed(tokens)
        maps = []
        for block in self.h:
            maps.append(block.attn.weights(block.ln_1(x)))
            x = block(x)
        return maps


def submodule(net: GPT, name: str):
    """The object at a dotted parameter path such as `h.0.attn.c_attn` (torch's get_submodule)."""
    for part in name.split("."):
        net = net[int(part)] if part.isdigit() else getattr(net, part)
    return net
