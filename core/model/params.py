"""The parameters of a GPT as plain data: names, shapes and initial values.

Every backend builds its model from the dict `init_params` returns and hands back a dict of the
same form, so weights move between backends, checkpoints and Hugging Face GPT-2 key for key.

Names are GPT-2's (Hugging Face's `GPT2LMHeadModel` without the `transformer.` prefix), and the
Llama-family options reuse them rather than adding Hugging Face Llama's, so one table covers every
architecture (C = n_embd, hs = head_size, kv = kv_heads * hs, F = mlp_hidden):

    wte.weight                  (vocab_size, C)     token embedding                 Llama: embed_tokens
    wpe.weight                  (block_size, C)     position embedding; absent with position="rope"
    h.{i}.ln_1.weight / .bias   (C,)                norm before attention (no bias with rmsnorm)
                                                                                    Llama: input_layernorm
    h.{i}.attn.c_attn.weight    (C, C + 2 * kv)     query, key and value projections side by side
    h.{i}.attn.c_attn.bias      (C + 2 * kv,)                                       Llama: q_, k_, v_proj
    h.{i}.attn.c_proj.weight    (C, C)              attention output projection     Llama: o_proj
    h.{i}.ln_2.weight / .bias   (C,)                norm before the MLP             Llama: post_attention_layernorm
    h.{i}.mlp.c_fc.weight       (C, F)              gelu: MLP expansion
                                (C, 2 * F)          swiglu: gate and up side by side
                                                                                    Llama: gate_, up_proj
    h.{i}.mlp.c_proj.weight     (F, C)              projection back to the residual stream
                                                                                    Llama: down_proj
    ln_f.weight / .bias         (C,)                final norm                      Llama: norm
    lm_head.weight              (vocab_size, C)     only when embeddings are untied

Fusing as GPT-2's c_attn does keeps one matmul per projection in every backend; the Llama converter
(core/convert/llama.py) splits and joins the side-by-side blocks.

Orientation: every Linear weight is stored (in_features, out_features) and applied as
`y = x @ W + b`, as GPT-2's original code and Hugging Face's `Conv1D` store it. Embedding-shaped
matrices (`wte`, `wpe`, `lm_head`) are (rows, n_embd); the output logits are `x @ wte.T`.
With `bias=False` there are no Linear or LayerNorm biases; RMSNorm never has one.
"""

from __future__ import annotations

import math

import numpy as np

from core.model.config import GPTConfig


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in a fixed order."""
    C, V = config.n_embd, config.vocab_size
    kv = config.kv_heads * config.head_size  # width of the keys, and of the values
    F = config.mlp_hidden
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (V, C)}
    if config.position == "learned":
        shapes["wpe.weight"] = (config.block_size, C)

    def layer_norm(name: str) -> None:
        shapes[f"{name}.weight"] = (C,)
        if config.bias and config.norm == "layernorm":
            shapes[f"{name}.bias"] = (C,)

    def linear(name: str, n_in: int, n_out: int) -> None:
        shapes[f"{name}.weight"] = (n_in, n_out)
        if config.bias:
            shapes[f"{name}.bias"] = (n_out,)

    for i in range(config.n_layer):
        layer_norm(f"h.{i}.ln_1")
        linear(f"h.{i}.attn.c_attn", C, C + 2 * kv)
        linear(f"h.{i}.attn.c_proj", C, C)
        layer_norm(f"h.{i}.ln_2")
        linear(f"h.{i}.mlp.c_fc", C, 2 * F if config.mlp == "swiglu" else F)
        linear(f"h.{i}.mlp.c_proj", F, C)
    layer_norm("ln_f")
    if not config.tie_embeddings:
        shapes["lm_head.weight"] = (V, C)
    return shapes


def decays(name: str, shape: tuple[int, ...]) -> bool:
    """Whether AdamW's weight decay applies: matrices yes, biases and LayerNorm gains no (nanoGPT)."""
    return len(shape) >= 2


def init_params(config: GPTConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """GPT-2 initialisation as float32 numpy arrays.

    Weights ~ normal(0, 0.02); the two projections that write into the residual stream
    (`attn.c_proj`, `mlp.c_proj`) are scaled by 1/sqrt(2 * n_layer) so the stream's variance does not
    grow with depth; biases zero; LayerNorm gains one.
    """
    rng = np.random.default_rng(seed)
    residual_std = 0.02 / math.sqrt(2 * config.n_layer)
    params: dict[str, np.ndarray] = {}
    for name, shape in param_shapes(config).items():
        if name.endswith(".bias"):
            value = np.zeros(shape)
        elif ".ln_" in name or name.startswith("ln_"):
            value = np.ones(shape)
        elif name.endswith("c_proj.weight"):
            value = rng.normal(0.0, residual_std, shape)
        else:
            value = rng.normal(0.0, 0.02, shape)
        params[name] = value.astype(np.float32)
    return params


def count_params(config: GPTConfig) -> int:
    """Number of trainable numbers (tied embeddings counted once)."""
    return sum(math.prod(shape) for shape in param_shapes(config).values())


def check_causal(config: GPTConfig) -> None:
    """Generation needs a causal model: a bidirectional one (causal=False) fills masks instead."""
    if not config.causal:
        raise ValueError("this model is bidirectional (causal=False) and cannot generate text: use predict-masked")


def check_servable(config: GPTConfig) -> None:
    """The slot cache of `serve` (backends/*/slots.py) continues text, so it needs a causal model; every
    position and attention option (learned or RoPE, full or grouped-query heads) is served."""
    check_causal(config)


def check_params(config: GPTConfig, params: dict[str, np.ndarray]) -> None:
    """Raise ValueError if `params` does not have exactly the names and shapes of `config`."""
    check_shapes(param_shapes(config), params, "parameter")


def check_shapes(expected: dict[str, tuple[int, ...]], arrays: dict[str, np.ndarray], what: str) -> None:
    """Raise ValueError unless `arrays` has exactly the names and shapes `expected` lists."""
    missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if missing or extra:
        raise ValueError(f"{what}s do not match the config: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, shape in expected.items():
        if tuple(arrays[name].shape) != shape:
            raise ValueError(f"{what} {name} has shape {tuple(arrays[name].shape)}, the config needs {shape}")
