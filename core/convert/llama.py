"""Hugging Face Llama-family (`LlamaForCausalLM`: Llama, SmolLM, TinyLlama...) <-> our parameters, in numpy.

Our Llama options (core/model/config.py: position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head)
compute what `LlamaForCausalLM` computes, with GPT-2's parameter names (core/model/params.py):

    model.embed_tokens.weight                        <-> wte.weight
    model.layers.{i}.input_layernorm.weight          <-> h.{i}.ln_1.weight
    model.layers.{i}.self_attn.{q,k,v}_proj.weight   <-> h.{i}.attn.c_attn.weight  [q | k | v], transposed
    model.layers.{i}.self_attn.o_proj.weight         <-> h.{i}.attn.c_proj.weight  transposed
    model.layers.{i}.post_attention_layernorm.weight <-> h.{i}.ln_2.weight
    model.layers.{i}.mlp.{gate,up}_proj.weight       <-> h.{i}.mlp.c_fc.weight     [gate | up], transposed
    model.layers.{i}.mlp.down_proj.weight            <-> h.{i}.mlp.c_proj.weight   transposed
    model.norm.weight                                <-> ln_f.weight
    lm_head.weight                                   <-> lm_head.weight (absent when tied)

torch's `nn.Linear` stores (out, in); we store (in, out), hence the transposes. RoPE needs no
permutation: Hugging Face's Llama rotates the two halves of each head (`rotate_half`), as ours does.
What a Llama config.json may hold that we do not compute (rope scaling, biases, sliding windows, an
activation other than SiLU, a head_dim other than hidden_size / heads) is refused in one line naming it.
"""

from __future__ import annotations

import numpy as np

from core.model.config import GPTConfig
from core.model.params import check_params

MODEL_TYPES = ("llama",)  # config.json model_type values that are LlamaForCausalLM
SKIPPED = ("rotary_emb.inv_freq",)  # buffers some older files hold: recomputed, not parameters


def is_llama(hf: dict) -> bool:
    """Whether a config.json dict describes a Llama-family model."""
    return hf.get("model_type") in MODEL_TYPES or "LlamaForCausalLM" in (hf.get("architectures") or [])


def rope_theta(hf: dict) -> float:
    """The RoPE base; a scaling scheme (linear, dynamic, yarn, llama3...) is refused, we compute plain RoPE."""
    rope = hf.get("rope_parameters") or {}  # transformers >= 5; older files: rope_theta + rope_scaling
    scaling = hf.get("rope_scaling") or {}
    kind = rope.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if kind != "default":
        raise ValueError(f"rope_type={kind!r} (rope scaling) is not supported: we compute plain RoPE (default) only")
    return float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))


def config_from_hf_llama(hf: dict) -> GPTConfig:
    """Our `GPTConfig` from a Llama config.json dict; what we do not compute is a ValueError naming the field."""
    refused = {
        "hidden_act": ("silu", "SwiGLU with SiLU"),
        "attention_bias": (False, "no attention biases"),
        "mlp_bias": (False, "no MLP biases"),
        "pretraining_tp": (1, "unsplit projections"),
    }
    for key, (expected, what) in refused.items():
        if hf.get(key, expected) != expected:
            raise ValueError(f"{key}={hf[key]!r} is not supported: our Llama computes {what} ({key}={expected!r})")
    for key in ("sliding_window", "layer_types", "no_rope_layers"):
        if hf.get(key):
            raise ValueError(f"{key}={hf[key]!r} is not supported: every layer of ours attends to the whole context")
    n_embd, n_head = int(hf.get("hidden_size", 4096)), int(hf.get("num_attention_heads", 32))
    if hf.get("head_dim") not in (None, n_embd // n_head):
        raise ValueError(f"head_dim={hf['head_dim']} is not supported: ours is hidden_size / num_attention_heads")
    config = GPTConfig(
        vocab_size=int(hf.get("vocab_size", 32000)),
        block_size=int(hf.get("max_position_embeddings", 2048)),
        n_layer=int(hf.get("num_hidden_layers", 32)),
        n_head=n_head,
        n_embd=n_embd,
        n_kv_head=int(hf.get("num_key_value_heads") or n_head),
        n_inner=int(hf.get("intermediate_size", 11008)),
        dropout=0.0,  # Llama's attention_dropout acts elsewhere than ours, and released models use 0
        bias=False,
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        layer_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        position="rope",
        rope_theta=rope_theta(hf),
        norm="rmsnorm",
        mlp="swiglu",
    )
    # Llama's own rounding gives the same width with n_inner=0: say so, as a model of ours would.
    return config.replace(n_inner=0) if config.replace(n_inner=0).mlp_hidden == config.n_inner else config


def check_exportable(config: GPTConfig) -> None:
    """A config Llama can hold: every Llama option chosen (a mix of GPT-2 and Llama parts has no HF class)."""
    llama = dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False, causal=True)
    for field, value in llama.items():
        if getattr(config, field) != value:
            raise ValueError(
                f"{field}={getattr(config, field)!r} has no place in LlamaForCausalLM (it needs {field}={value!r}); "
                "a model of all GPT-2 options exports as GPT-2"
            )


def from_hf_llama(state: dict, hf: dict) -> tuple[GPTConfig, dict[str, np.ndarray]]:
    """A `LlamaForCausalLM` state dict (numpy) and its config dict -> our config and float32 params."""
    config = config_from_hf_llama(hf)
    try:
        return config, _params_from_hf(config, state)
    except KeyError as err:
        raise ValueError(f"weight {err} is missing: not a complete LlamaForCausalLM of its config.json") from None


def _params_from_hf(config: GPTConfig, state: dict) -> dict[str, np.ndarray]:
    w = {k: np.asarray(v, dtype=np.float32) for k, v in state.items() if not k.endswith(SKIPPED)}
    params = {"wte.weight": w.pop("model.embed_tokens.weight"), "ln_f.weight": w.pop("model.norm.weight")}
    for i in range(config.n_layer):
        layer = f"model.layers.{i}."
        get = lambda name, layer=layer: w.pop(layer + name)  # noqa: E731  (each key once: leftovers are reported)
        params[f"h.{i}.ln_1.weight"] = get("input_layernorm.weight")
        q, k, v = (get(f"self_attn.{x}_proj.weight") for x in "qkv")  # (out, in) each
        params[f"h.{i}.attn.c_attn.weight"] = np.concatenate([q.T, k.T, v.T], axis=1)  # (C, C + 2 kv)
        params[f"h.{i}.attn.c_proj.weight"] = get("self_attn.o_proj.weight").T.copy()
        params[f"h.{i}.ln_2.weight"] = get("post_attention_layernorm.weight")
        gate, up = get("mlp.gate_proj.weight"), get("mlp.up_proj.weight")  # (F, C) each
        params[f"h.{i}.mlp.c_fc.weight"] = np.concatenate([gate.T, up.T], axis=1)  # (C, 2F)
        params[f"h.{i}.mlp.c_proj.weight"] = get("mlp.down_proj.weight").T.copy()
    head = w.pop("lm_head.weight", None)
    if not config.tie_embeddings:
        if head is None:
            raise ValueError("config.json unties the embeddings (tie_word_embeddings false) but there is no lm_head")
        params["lm_head.weight"] = head
    if w:
        raise ValueError(f"unexpected weights {sorted(w)[:3]}: this is not a plain LlamaForCausalLM")
    check_params(config, params)
    return params


def to_hf_llama(config: GPTConfig, params: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    """Our Llama-option config and float32 params -> a `LlamaForCausalLM` state dict and config.json dict."""
    check_exportable(config)
    check_params(config, params)
    C, kv, F = config.n_embd, config.kv_heads * config.head_size, config.mlp_hidden
    state = {"model.embed_tokens.weight": params["wte.weight"], "model.norm.weight": params["ln_f.weight"]}
    for i in range(config.n_layer):
        layer = f"model.layers.{i}."
        attn = params[f"h.{i}.attn.c_attn.weight"]  # (C, C + 2 kv): [q | k | v]
        fc = params[f"h.{i}.mlp.c_fc.weight"]  # (C, 2F): [gate | up]
        state.update({
            layer + "input_layernorm.weight": params[f"h.{i}.ln_1.weight"],
            layer + "self_attn.q_proj.weight": attn[:, :C].T,
            layer + "self_attn.k_proj.weight": attn[:, C : C + kv].T,
            layer + "self_attn.v_proj.weight": attn[:, C + kv :].T,
            layer + "self_attn.o_proj.weight": params[f"h.{i}.attn.c_proj.weight"].T,
            layer + "post_attention_layernorm.weight": params[f"h.{i}.ln_2.weight"],
            layer + "mlp.gate_proj.weight": fc[:, :F].T,
            layer + "mlp.up_proj.weight": fc[:, F:].T,
            layer + "mlp.down_proj.weight": params[f"h.{i}.mlp.c_proj.weight"].T,
        })  # fmt: skip
    if not config.tie_embeddings:
        state["lm_head.weight"] = params["lm_head.weight"]
    state = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    hf = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": C,
        "intermediate_size": F,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_size,
        "hidden_act": "silu",
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.layer_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": config.tie_embeddings,
        "initializer_range": 0.02,
        "bos_token_id": None,
        "eos_token_id": None,
        "use_cache": True,
        "dtype": "float32",
    }
    return state, hf
