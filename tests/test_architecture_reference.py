"""The numpy reference's architecture options against properties checked by hand: RoPE's relative-position
invariance, RMSNorm's definition, SwiGLU's shapes, grouped-query attention reducing to multi-head attention,
and the config's one-line refusals. No framework needed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.model import reference
from core.model.config import GPTConfig, preset
from core.model.params import count_params, init_params, param_shapes

LLAMA = dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False)


@given(st.integers(0, 1000), st.integers(0, 50), st.integers(0, 2**31 - 1))
def test_rope_scores_depend_only_on_distance(p, shift, seed):
    """q at position p+s and k at position s give the same q.k for every shift s: rotations compose."""
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((2, 1, 1, 1, 8))
    def score(qpos: int, kpos: int) -> float:
        rq = reference.rope(q, np.array([qpos]), 10000.0)
        rk = reference.rope(k, np.array([kpos]), 10000.0)
        return float((rq * rk).sum())
    assert math.isclose(score(p + shift, shift), score(p, 0), rel_tol=1e-9, abs_tol=1e-9)


def test_rope_keeps_lengths_and_is_identity_at_position_zero():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 8))
    turned = reference.rope(x, np.arange(5), 500.0)
    np.testing.assert_allclose(np.linalg.norm(turned, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(turned[:, :, 0], x[:, :, 0], rtol=0, atol=0)
    assert not np.allclose(turned[:, :, 1:], x[:, :, 1:])


def test_rms_norm_gives_unit_rms_times_gain():
    x = np.random.default_rng(1).standard_normal((4, 7)) * 3 + 2
    gain = np.linspace(0.5, 2.0, 7)
    y = reference.rms_norm(x, gain, eps=0.0)
    np.testing.assert_allclose(np.sqrt(((y / gain) ** 2).mean(-1)), 1.0, rtol=1e-12)
    np.testing.assert_allclose(y / gain * np.sqrt((x**2).mean(-1, keepdims=True)), x, rtol=1e-12)  # no mean removed


def test_swiglu_shapes_and_llama_rounding():
    config = GPTConfig(n_embd=96, n_head=4, mlp="swiglu", bias=False)
    assert config.mlp_hidden == 256  # int(8 * 96 / 3) = 256, already a multiple of 256
    assert GPTConfig(n_embd=100, n_head=4, mlp="swiglu").mlp_hidden == 512  # 266 rounds up
    assert GPTConfig(n_embd=32, n_head=4, mlp="swiglu", n_inner=40).mlp_hidden == 40
    shapes = param_shapes(config)
    assert shapes["h.0.mlp.c_fc.weight"] == (96, 512) and shapes["h.0.mlp.c_proj.weight"] == (256, 96)
    p = {n: v.astype(np.float64) for n, v in init_params(config).items()}
    x = np.random.default_rng(2).standard_normal((2, 3, 96))
    out = reference.mlp(config, p, 0, x)
    assert out.shape == (2, 3, 96)
    gate, up = np.split(x @ p["h.0.mlp.c_fc.weight"], 2, axis=-1)
    np.testing.assert_allclose(out, (gate / (1 + np.exp(-gate)) * up) @ p["h.0.mlp.c_proj.weight"], rtol=1e-12)


def test_gqa_with_as_many_kv_heads_as_heads_is_multi_head_attention():
    base = GPTConfig(vocab_size=19, n_layer=2, n_head=4, n_embd=16, **LLAMA)
    params = init_params(base, seed=3)
    tokens = np.random.default_rng(3).integers(0, 19, (2, 9))
    np.testing.assert_array_equal(
        reference.logits(base.replace(n_kv_head=4), params, tokens), reference.logits(base, params, tokens)
    )


@pytest.mark.parametrize("n_kv_head", [1, 2])
def test_gqa_equals_multi_head_attention_with_shared_keys(n_kv_head):
    """A GQA model equals the MHA model whose key and value heads are the GQA ones repeated per group."""
    gqa = GPTConfig(vocab_size=19, n_layer=2, n_head=4, n_embd=16, n_kv_head=n_kv_head, **LLAMA)
    mha = gqa.replace(n_kv_head=0)
    params = init_params(gqa, seed=4)
    C, D, group = 16, gqa.head_size, 4 // n_kv_head
    wide = dict(params)
    for i in range(gqa.n_layer):
        w = params[f"h.{i}.attn.c_attn.weight"]
        q, k, v = w[:, :C], w[:, C : C + n_kv_head * D], w[:, C + n_kv_head * D :]
        repeat = lambda a: np.repeat(a.reshape(C, n_kv_head, D), group, axis=1).reshape(C, C)  # noqa: E731
        wide[f"h.{i}.attn.c_attn.weight"] = np.concatenate([q, repeat(k), repeat(v)], axis=1)
    tokens = np.random.default_rng(4).integers(0, 19, (2, 9))
    np.testing.assert_allclose(
        reference.logits(gqa, params, tokens), reference.logits(mha, wide, tokens), rtol=1e-6, atol=1e-6
    )


def test_rope_model_has_no_wpe_and_still_sees_order():
    """Attention without positions is blind to the order of earlier tokens; RoPE is what restores it."""
    config = GPTConfig(vocab_size=19, n_layer=1, n_head=2, n_embd=16, position="rope")
    assert "wpe.weight" not in param_shapes(config)
    params = init_params(config, seed=5)
    params["h.0.attn.c_attn.weight"] *= 20  # sharp attention, so that order effects are large
    ordered, swapped = np.array([[1, 2, 3, 4]]), np.array([[2, 1, 3, 4]])
    blind = config.replace(position="learned")  # the same weights with an all-zero wpe: no position signal
    blind_params = {**params, "wpe.weight": np.zeros((config.block_size, 16), np.float32)}
    np.testing.assert_allclose(
        reference.logits(blind, blind_params, ordered)[0, -1], reference.logits(blind, blind_params, swapped)[0, -1],
        rtol=1e-5, atol=1e-6,
    )
    rope_gap = reference.logits(config, params, ordered)[0, -1] - reference.logits(config, params, swapped)[0, -1]
    assert np.abs(rope_gap).max() > 1e-4


def test_rmsnorm_has_no_bias_even_with_bias_true():
    shapes = param_shapes(GPTConfig(norm="rmsnorm", bias=True))
    assert "ln_f.bias" not in shapes and "h.0.ln_1.bias" not in shapes and "h.0.attn.c_attn.bias" in shapes


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (dict(position="alibi"), "position="),
        (dict(norm="batchnorm"), "norm="),
        (dict(mlp="relu"), "mlp="),
        (dict(n_kv_head=3), "n_kv_head=3"),
        (dict(n_kv_head=-1), "n_kv_head=-1"),
        (dict(n_inner=-5), "n_inner=-5"),
        (dict(position="rope", n_embd=12, n_head=4), "position='rope'"),
        (dict(position="rope", rope_theta=0.5), "rope_theta=0.5"),
    ],
)
def test_bad_options_are_refused_in_one_line_naming_the_field(fields, named):
    with pytest.raises(ValueError, match=named) as info:
        GPTConfig(**fields)
    assert "\n" not in str(info.value)


def test_llama_presets():
    tiny = preset("llama-tiny")
    assert (tiny.position, tiny.norm, tiny.mlp, tiny.kv_heads, tiny.bias) == ("rope", "rmsnorm", "swiglu", 2, False)
    smol = preset("smollm-135m")
    # SmolLM-135M's published size is 134.5M parameters (tied embeddings counted once).
    assert 134_000_000 < count_params(smol) < 135_000_000
