"""The executable spec: a GPT forward pass in plain numpy, written to be read.

This is the oracle every backend is tested against. It computes in float64 (so its own round-off
is far below the backends') and returns float32. Speed is not a goal here; clarity is.

    tokens (B, T)
      -> token embedding (+ position embedding)                 (B, T, C)
      -> n_layer x [ x + attention(ln_1(x)); x + mlp(ln_2(x)) ] (pre-norm blocks)
      -> ln_f -> x @ wte.T                                      (B, T, vocab_size)

Each architecture option of `GPTConfig` is one plain function here: `rms_norm`, `rope` (rotary
positions, applied to queries and keys inside attention instead of a wpe table), `swiglu`, and
grouped-query attention (`repeat_kv`: each key/value head serves several query heads). LoRA adapters
(core/model/lora.py), when given, add their low-rank update inside `linear`.
"""

from __future__ import annotations

import math

import numpy as np

from core.model.config import GPTConfig
from core.model.lora import LoraConfig
from core.model.softmax import log_softmax, softmax


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, eps: float) -> np.ndarray:
    """Normalise the last axis to zero mean and unit variance, then scale and shift."""
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)  # biased variance, as torch and tinygrad use
    y = (x - mean) / np.sqrt(var + eps) * weight
    return y + bias if bias is not None else y


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """Scale the last axis to unit root-mean-square (no mean subtracted, no shift), then by a gain."""
    return x / np.sqrt((x**2).mean(axis=-1, keepdims=True) + eps) * weight


def norm(config: GPTConfig, x: np.ndarray, p: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The configured normalisation with parameters `name.weight` (and `name.bias`)."""
    if config.norm == "rmsnorm":
        return rms_norm(x, p[f"{name}.weight"], config.layer_norm_eps)
    return layer_norm(x, p[f"{name}.weight"], p.get(f"{name}.bias"), config.layer_norm_eps)


def rotations(positions: np.ndarray, head_size: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (T, D/2) of RoPE's angles position * theta**(-2i/D) at `positions` (T,)."""
    inverse_frequency = theta ** (-np.arange(0, head_size, 2) / head_size)  # (D/2,)
    angle = positions[:, None] * inverse_frequency[None, :]  # (T, D/2)
    return np.cos(angle), np.sin(angle)


def rope(x: np.ndarray, positions: np.ndarray, theta: float) -> np.ndarray:
    """Rotary position embedding of queries or keys x (B, H, T, D) at `positions` (T,).

    Channel i of the first half and channel i of the second half form a pair (Hugging Face Llama's
    "rotate_half" layout), turned by the angle position * theta**(-2i/D). A rotation by the query's
    position times one by the key's leaves q.k depending only on their distance.
    """
    D = x.shape[-1]
    cos, sin = rotations(positions, D, theta)  # (T, D/2)
    first, second = x[..., : D // 2], x[..., D // 2 :]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def repeat_kv(x: np.ndarray, n_head: int) -> np.ndarray:
    """Keys or values (B, kv_heads, T, D) -> (B, n_head, T, D): kv head j serves query heads j*g .. j*g+g-1."""
    return np.repeat(x, n_head // x.shape[1], axis=1)


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), the gate's activation in SwiGLU."""
    return x / (1.0 + np.exp(-x))


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU with the tanh approximation, the one GPT-2 was trained with."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def linear(x: np.ndarray, p: dict[str, np.ndarray], name: str) -> np.ndarray:
    """y = x @ W + b, with W stored (in_features, out_features)."""
    y = x @ p[f"{name}.weight"]
    if f"{name}.lora_A" in p:  # LoRA: a low-rank update beside the frozen weight, (x @ A) @ B
        y = y + (x @ p[f"{name}.lora_A"]) @ p[f"{name}.lora_B"]  # (B, T, in) -> (B, T, r) -> (B, T, out)
    bias = p.get(f"{name}.bias")
    return y + bias if bias is not None else y


def attention(config: GPTConfig, p: dict[str, np.ndarray], i: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multi-head self-attention of block i (causal unless config.causal is False); output and weights."""
    B, T, C = x.shape
    H, KV, D = config.n_head, config.kv_heads, config.head_size
    q, k, v = np.split(linear(x, p, f"h.{i}.attn.c_attn"), [C, C + KV * D], axis=-1)  # (B, T, C), 2 x (B, T, KV*D)
    # (B, T, heads * D) -> (B, heads, T, D): each head attends over its own slice of the channels
    q = q.reshape(B, T, H, D).transpose(0, 2, 1, 3)
    k, v = (a.reshape(B, T, KV, D).transpose(0, 2, 1, 3) for a in (k, v))
    if config.position == "rope":
        q, k = rope(q, np.arange(T), config.rope_theta), rope(k, np.arange(T), config.rope_theta)
    k, v = repeat_kv(k, H), repeat_kv(v, H)  # (B, KV, T, D) -> (B, H, T, D)
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D)  # (B, H, T, T)
    if config.causal:  # position t may not look at t+1, t+2, ...
        future = np.triu(np.ones((T, T), dtype=bool), k=1)
        scores = np.where(future, -np.inf, scores)
    weights = softmax(scores)  # (B, H, T, T), each row sums to 1
    y = weights @ v  # (B, H, T, D)
    y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, H, T, D) -> (B, T, C): heads side by side
    return linear(y, p, f"h.{i}.attn.c_proj"), weights


def mlp(config: GPTConfig, p: dict[str, np.ndarray], i: int, x: np.ndarray) -> np.ndarray:
    """Position-wise feed-forward: expand to F = mlp_hidden, GELU (or SwiGLU's gated SiLU), project back to C."""
    h = linear(x, p, f"h.{i}.mlp.c_fc")  # (B, T, F), or (B, T, 2F) for swiglu
    if config.mlp == "swiglu":
        gate, up = np.split(h, 2, axis=-1)  # 2 x (B, T, F)
        return linear(silu(gate) * up, p, f"h.{i}.mlp.c_proj")
    return linear(gelu(h), p, f"h.{i}.mlp.c_proj")


def with_adapters(params: dict[str, np.ndarray], adapters: dict[str, np.ndarray], lora: LoraConfig) -> dict:
    """`params` and LoRA `adapters` in one float64 dict for `linear`; each B holds scale * B, since
    (x @ A) @ (scale * B) = scale * (x @ A) @ B. Biases or norms trained beside the adapters replace the base's."""
    p = {name: value.astype(np.float64) for name, value in {**params, **adapters}.items()}
    for name in adapters:
        if name.endswith(".lora_B"):
            p[name] = lora.scale * p[name]
    return p


def forward(
    config: GPTConfig,
    params: dict[str, np.ndarray],
    tokens: np.ndarray,
    adapters: dict[str, np.ndarray] | None = None,
    lora: LoraConfig | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits (B, T, vocab_size) in float64 and each layer's attention weights (B, H, T, T); with LoRA
    `adapters` (and their `lora` config) the adapted model's."""
    tokens = np.asarray(tokens)
    B, T = tokens.shape
    if T > config.block_size:
        raise ValueError(f"sequence length {T} exceeds block_size={config.block_size}: pass at most that many tokens")
    if adapters:
        p = with_adapters(params, adapters, lora)
    else:
        p = {name: value.astype(np.float64) for name, value in params.items()}
    x = p["wte.weight"][tokens]  # (B, T, C)
    if config.position == "learned":  # (rope turns queries and keys inside attention instead)
        x = x + p["wpe.weight"][np.arange(T)]
    attention_maps = []
    for i in range(config.n_layer):
        a, weights = attention(config, p, i, norm(config, x, p, f"h.{i}.ln_1"))
        x = x + a  # residual connection around attention
        x = x + mlp(config, p, i, norm(config, x, p, f"h.{i}.ln_2"))  # residual connection around the MLP
        attention_maps.append(weights)
    x = norm(config, x, p, "ln_f")
    head = p["wte.weight"] if config.tie_embeddings else p["lm_head.weight"]
    return x @ head.T, attention_maps  # (B, T, C) @ (C, V) -> (B, T, V)


def logits(
    config: GPTConfig, params: dict[str, np.ndarray], tokens: np.ndarray, adapters: dict | None = None,
    lora: LoraConfig | None = None,
) -> np.ndarray:
    """Next-token logits for int tokens (B, T): float32 (B, T, vocab_size)."""
    return forward(config, params, tokens, adapters, lora)[0].astype(np.float32)


def cross_entropy(logits: np.ndarray, targets: np.ndarray, ignore_index: int = -1) -> float:
    """Mean negative log-likelihood of `targets` (B, T) under `logits` (B, T, V); -1 targets are skipped."""
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    keep = targets != ignore_index
    log_probs = log_softmax(logits)
    picked = np.take_along_axis(log_probs, np.where(keep, targets, 0)[..., None], axis=-1)[..., 0]
    return float(-(picked * keep).sum() / max(int(keep.sum()), 1))


def loss(
    config: GPTConfig, params: dict[str, np.ndarray], tokens: np.ndarray, targets: np.ndarray,
    adapters: dict | None = None, lora: LoraConfig | None = None,
) -> float:
    """Mean next-token cross-entropy of the model (with LoRA `adapters`, if given) on (tokens, targets), both (B, T)."""
    return cross_entropy(forward(config, params, tokens, adapters, lora)[0], targets)
