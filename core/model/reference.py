"""The executable spec: a GPT forward pass in plain numpy, written to be read.

This is the oracle every backend is tested against. It computes in float64 (so its own round-off
is far below the backends') and returns float32. Speed is not a goal here; clarity is.

    tokens (B, T)
      -> token embedding + position embedding                 (B, T, C)
      -> n_layer x [ x + attention(ln_1(x)); x + mlp(ln_2(x)) ] (pre-LayerNorm blocks)
      -> ln_f -> x @ wte.T                                      (B, T, vocab_size)
"""

from __future__ import annotations

import math

import numpy as np

from core.model.config import GPTConfig
from core.model.softmax import log_softmax, softmax


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, eps: float) -> np.ndarray:
    """Normalise the last axis to zero mean and unit variance, then scale and shift."""
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)  # biased variance, as torch and tinygrad use
    y = (x - mean) / np.sqrt(var + eps) * weight
    return y + bias if bias is not None else y


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU with the tanh approximation, the one GPT-2 was trained with."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def linear(x: np.ndarray, p: dict[str, np.ndarray], name: str) -> np.ndarray:
    """y = x @ W + b, with W stored (in_features, out_features)."""
    y = x @ p[f"{name}.weight"]
    bias = p.get(f"{name}.bias")
    return y + bias if bias is not None else y


def attention(config: GPTConfig, p: dict[str, np.ndarray], i: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multi-head self-attention of block i (causal unless config.causal is False); output and weights."""
    B, T, C = x.shape
    H, D = config.n_head, config.head_size
    q, k, v = np.split(linear(x, p, f"h.{i}.attn.c_attn"), 3, axis=-1)  # 3 x (B, T, C)
    # (B, T, C) -> (B, H, T, D): each head attends over its own slice of the channels
    q, k, v = (a.reshape(B, T, H, D).transpose(0, 2, 1, 3) for a in (q, k, v))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D)  # (B, H, T, T)
    if config.causal:  # position t may not look at t+1, t+2, ...
        future = np.triu(np.ones((T, T), dtype=bool), k=1)
        scores = np.where(future, -np.inf, scores)
    weights = softmax(scores)  # (B, H, T, T), each row sums to 1
    y = weights @ v  # (B, H, T, D)
    y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, H, T, D) -> (B, T, C): heads side by side
    return linear(y, p, f"h.{i}.attn.c_proj"), weights


def mlp(p: dict[str, np.ndarray], i: int, x: np.ndarray) -> np.ndarray:
    """Position-wise feed-forward: expand to 4*C, GELU, project back to C."""
    return linear(gelu(linear(x, p, f"h.{i}.mlp.c_fc")), p, f"h.{i}.mlp.c_proj")


def forward(
    config: GPTConfig, params: dict[str, np.ndarray], tokens: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits (B, T, vocab_size) in float64 and each layer's attention weights (B, H, T, T)."""
    tokens = np.asarray(tokens)
    B, T = tokens.shape
    if T > config.block_size:
        raise ValueError(f"sequence length {T} exceeds block_size={config.block_size}: pass at most that many tokens")
    p = {name: value.astype(np.float64) for name, value in params.items()}
    eps = config.layer_norm_eps
    x = p["wte.weight"][tokens] + p["wpe.weight"][np.arange(T)]  # (B, T, C)
    attention_maps = []
    for i in range(config.n_layer):
        h = layer_norm(x, p[f"h.{i}.ln_1.weight"], p.get(f"h.{i}.ln_1.bias"), eps)
        a, weights = attention(config, p, i, h)
        x = x + a  # residual connection around attention
        h = layer_norm(x, p[f"h.{i}.ln_2.weight"], p.get(f"h.{i}.ln_2.bias"), eps)
        x = x + mlp(p, i, h)  # residual connection around the MLP
        attention_maps.append(weights)
    x = layer_norm(x, p["ln_f.weight"], p.get("ln_f.bias"), eps)
    head = p["wte.weight"] if config.tie_embeddings else p["lm_head.weight"]
    return x @ head.T, attention_maps  # (B, T, C) @ (C, V) -> (B, T, V)


def logits(config: GPTConfig, params: dict[str, np.ndarray], tokens: np.ndarray) -> np.ndarray:
    """Next-token logits for int tokens (B, T): float32 (B, T, vocab_size)."""
    return forward(config, params, tokens)[0].astype(np.float32)


def cross_entropy(logits: np.ndarray, targets: np.ndarray, ignore_index: int = -1) -> float:
    """Mean negative log-likelihood of `targets` (B, T) under `logits` (B, T, V); -1 targets are skipped."""
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    keep = targets != ignore_index
    log_probs = log_softmax(logits)
    picked = np.take_along_axis(log_probs, np.where(keep, targets, 0)[..., None], axis=-1)[..., 0]
    return float(-(picked * keep).sum() / max(int(keep.sum()), 1))


def loss(config: GPTConfig, params: dict[str, np.ndarray], tokens: np.ndarray, targets: np.ndarray) -> float:
    """Mean next-token cross-entropy of the model on (tokens, targets), both (B, T)."""
    return cross_entropy(forward(config, params, tokens)[0], targets)
