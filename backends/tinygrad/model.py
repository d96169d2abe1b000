"""GPT in tinygrad: the same network as `core.model.reference`, as plain objects holding Tensors.

Attribute names are the parameter names of `core.model.params`, so `nn.state.get_state_dict(model)` keys
are the checkpoint keys. Linear weights are stored (in_features, out_features), which is what
`Tensor.linear` expects, so tinygrad needs no transposition at all. Read this file beside
`backends/torch/model.py`: they match line for line where the frameworks allow.

A few places differ from the obvious code because tinygrad is slow there on a CPU: `attention`
(attention.py), `Embedding.__call__`, the kernel boundaries of `stored` and a linear layer's input
gradient (fusion.py), and RoPE's angles read from a table (rope.py `rotation_table`).
`GPT_TINYGRAD_FAST=0` in the environment (or `fusion.FAST = False` before a model is built) turns them
all off. The matmuls themselves are plain `@`: gemm.py and matvec.py give their kernels options when
tinygrad compiles them.
"""

from __future__ import annotations

import math

from tinygrad import Context, Tensor, UOp, dtypes, nn
from tinygrad.helpers import TRAINING

from backends.tinygrad import fusion
from backends.tinygrad.attention import attention
from backends.tinygrad.fusion import stored
from backends.tinygrad.rope import rope, rotation_table, rotations
from core.model.config import GPTConfig


def repeat_kv(x: Tensor, n_head: int) -> Tensor:
    """Keys or values (B, n_kv_head, S, hs) -> (B, n_head, S, hs): kv head j serves query heads j*g .. j*g+g-1."""
    return x.repeat_interleave(n_head // x.shape[1], dim=1) if x.shape[1] != n_head else x


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
        if fusion.FAST and TRAINING and isinstance(self.weight.device, str):
            return fusion.with_transposed_input_gradient(x, self.weight, self.bias)
        return x.linear(self.weight, self.bias)  # weight (in, out)


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
        # One index is left to plain indexing: tinygrad 0.14 fails to schedule the scatter-add's gradient
        # for a constant index (the position 0 of a one-token block), and one row's one-hot sum is cheap.
        one = idx.numel() == 1
        if fusion.FAST and TRAINING and single and not one and _device_type(self.weight.device) in ("CPU", "AMD"):
            # Plain indexing backpropagates through a one-hot sum over the whole vocabulary (tokens x n x
            # n_embd); nn.Embedding with USE_ATOMICS scatter-adds the gradient rows instead (CPU, AMD only).
            with Context(USE_ATOMICS=1):
                return nn.Embedding.__call__(self, idx)
        return self.weight[idx]  # (B, T) -> (B, T, n_embd)

    def attend(self, x: Tensor) -> Tensor:
        """x @ weight.T: (B, T, n_embd) -> (B, T, n). With int8, a row's scale multiplies its logit."""
        if self.weight is None:
            return (x @ self.weight_int8.T.cast(x.dtype)) * self.weight_scale
        n, pad = self.weight.shape[0], -self.weight.shape[0] % 16
        if not (fusion.FAST and pad and math.prod(x.shape[:-1]) >= 64):
            return x @ self.weight.T
        # A vocabulary that 16 does not divide (a character-level model's 65 or 98) left gemm.py only 2
        # outputs at a time in a dot-product kernel (10 GFLOP/s). Zero rows pad it to a multiple of 16 and
        # the product reads a transposed copy (n_embd, n + pad), an outer-product kernel; the logits and
        # their gradient are stored padded and sliced (baby GPT: evaluation 0.96x, training 0.98x, side by
        # side). Not for a decode step's few rows, where copying the whole matrix would cost more.
        weight = stored(self.weight.pad(((0, pad), None)).T)  # (n_embd, n + pad), the extra columns zero
        # In training the input gradient dlogits @ weight.T reads its own transposed copy, as a linear
        # layer's does (fusion.py): else it is a dot-product kernel (baby GPT: 1.5-3.6 ms, 4-10 GFLOP/s).
        logits = fusion.with_transposed_input_gradient(x, weight) if TRAINING else x @ weight
        return stored(logits, gradient=True)[..., :n]  # (B, T, n + pad) -> (B, T, n)


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
        qkv = self.c_attn(x)
        # In training the gradients of q, k and v are stored apart, then joined into qkv's. Else tinygrad
        # takes the split's gradient as three padded pieces summed in one kernel that runs all three
        # attention sums for every element, two thirds of them on zeros (3.1-5.7 ms a baby-GPT layer).
        qkv = stored(qkv, gradient=True) if TRAINING else qkv
        q, k, v = qkv.split([C, self.kv_size, self.kv_size], dim=2)  # (B, T, C), 2 x (B, T, kv_size)
        if TRAINING:
            q, k, v = (stored(a, gradient=True) for a in (q, k, v))
        # (B, T, heads * hs) -> (B, heads, T, hs)
        q = q.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k, v = (a.reshape(B, T, self.n_kv_head, C // self.n_head).transpose(1, 2) for a in (k, v))
        if self.rope_theta is not None:
            hs = C // self.n_head
            if fusion.FAST and isinstance(x.device, str):  # rows start..start+T of the table (start symbolic in decode)
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
            if isinstance(start, UOp) and T == 1 and fusion.FAST:
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
        # In training the residual stream's gradient is stored at each add: it is a sum of several
        # gradients (and LayerNorm's per-row terms), which each weight-gradient matmul reading it would
        # otherwise add up again for every output tile (baby-GPT training step 0.96x, side by side).
        x = x + self.attn(self.ln_1(x), cache, layer, start)
        x = stored(x, gradient=True) if TRAINING else x
        x = x + self.mlp(self.ln_2(x))
        return stored(x, gradient=True) if TRAINING else x


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
