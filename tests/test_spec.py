"""core/model/params.py: GPT-2 parameter names and shapes, initialisation, and the parameter check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.model.config import GPTConfig
from core.model.params import check_params, count_params, decays, init_params, param_shapes

LAYER_MODULES = ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")


def gpt2_names(n_layer: int, bias: bool, tie: bool) -> list[str]:
    """Hugging Face GPT2LMHeadModel's parameter names (without `transformer.`), in its order."""
    names = ["wte.weight", "wpe.weight"]
    for i in range(n_layer):
        for module in LAYER_MODULES:
            names += [f"h.{i}.{module}.weight"] + ([f"h.{i}.{module}.bias"] if bias else [])
    names += ["ln_f.weight"] + (["ln_f.bias"] if bias else [])
    return names + ([] if tie else ["lm_head.weight"])


@st.composite
def configs(draw) -> GPTConfig:
    n_head = draw(st.integers(1, 4))
    return GPTConfig(
        vocab_size=draw(st.integers(1, 300)),
        block_size=draw(st.integers(1, 64)),
        n_layer=draw(st.integers(1, 4)),
        n_head=n_head,
        n_embd=n_head * draw(st.integers(1, 16)),
        bias=draw(st.booleans()),
        tie_embeddings=draw(st.booleans()),
    )


@given(configs())
def test_names_are_gpt2s(config):
    assert list(param_shapes(config)) == gpt2_names(config.n_layer, config.bias, config.tie_embeddings)


@given(configs())
def test_shapes_follow_the_spec(config):
    C, V = config.n_embd, config.vocab_size
    shapes = param_shapes(config)
    assert shapes["wte.weight"] == (V, C)
    assert shapes["wpe.weight"] == (config.block_size, C)
    for i in range(config.n_layer):
        # Linear weights are (in_features, out_features), as GPT-2's Conv1D stores them
        assert shapes[f"h.{i}.attn.c_attn.weight"] == (C, 3 * C)
        assert shapes[f"h.{i}.attn.c_proj.weight"] == (C, C)
        assert shapes[f"h.{i}.mlp.c_fc.weight"] == (C, 4 * C)
        assert shapes[f"h.{i}.mlp.c_proj.weight"] == (4 * C, C)
        for ln in ("ln_1", "ln_2"):
            assert shapes[f"h.{i}.{ln}.weight"] == (C,)
        if config.bias:
            assert shapes[f"h.{i}.attn.c_attn.bias"] == (3 * C,)
            assert shapes[f"h.{i}.mlp.c_fc.bias"] == (4 * C,)
            assert shapes[f"h.{i}.mlp.c_proj.bias"] == (C,)
    assert shapes["ln_f.weight"] == (C,)
    if not config.tie_embeddings:
        assert shapes["lm_head.weight"] == (V, C)


def test_lm_head_only_when_untied():
    assert "lm_head.weight" not in param_shapes(GPTConfig(tie_embeddings=True))
    assert "lm_head.weight" in param_shapes(GPTConfig(tie_embeddings=False))


def test_no_biases_without_bias():
    names = list(param_shapes(GPTConfig(bias=False)))
    assert not [n for n in names if n.endswith(".bias")]
    assert any(n.endswith(".bias") for n in param_shapes(GPTConfig(bias=True)))


@given(configs(), st.integers(0, 2**32 - 1))
def test_init_matches_shapes_dtype_and_count(config, seed):
    params = init_params(config, seed)
    assert {n: p.shape for n, p in params.items()} == param_shapes(config)
    assert all(p.dtype == np.float32 for p in params.values())
    assert count_params(config) == sum(p.size for p in params.values())
    check_params(config, params)  # init_params always satisfies its own check


def test_init_statistics():
    config = GPTConfig(vocab_size=512, block_size=256, n_layer=4, n_head=4, n_embd=64)
    params = init_params(config, seed=7)
    residual_std = 0.02 / math.sqrt(2 * config.n_layer)  # GPT-2's scaled init of residual projections

    def pooled(suffix: str) -> np.ndarray:
        return np.concatenate([p.ravel() for n, p in params.items() if n.endswith(suffix)]).astype(np.float64)

    for suffix, std in [
        ("wte.weight", 0.02),
        ("wpe.weight", 0.02),
        ("attn.c_attn.weight", 0.02),
        ("mlp.c_fc.weight", 0.02),
        ("attn.c_proj.weight", residual_std),
        ("mlp.c_proj.weight", residual_std),
    ]:
        values = pooled(suffix)
        assert values.size >= 16_000  # std estimate within ~0.6% (one sigma): 4% is > 6 sigma
        assert values.std() == pytest.approx(std, rel=0.04), suffix
        assert abs(values.mean()) < 5 * std / math.sqrt(values.size), suffix
    for name, value in params.items():
        if name.endswith(".bias"):
            assert not value.any(), name
        elif ".ln_" in name or name.startswith("ln_f"):
            assert (value == 1).all(), name


def test_init_is_deterministic_per_seed():
    config = GPTConfig(bias=False, tie_embeddings=False)
    a, b, c = init_params(config, 3), init_params(config, 3), init_params(config, 4)
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not np.array_equal(a["wte.weight"], c["wte.weight"])
    assert not np.array_equal(a["lm_head.weight"], c["lm_head.weight"])


def test_decay_applies_to_matrices_only():
    shapes = param_shapes(GPTConfig(tie_embeddings=False))
    for name, shape in shapes.items():
        matrix = name in ("wte.weight", "wpe.weight", "lm_head.weight") or (name.endswith(".weight") and ".c_" in name)
        assert decays(name, shape) == matrix, name


# ---- check_params


@pytest.fixture
def config():
    return GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def test_check_params_missing_key(config):
    params = init_params(config)
    del params["h.1.mlp.c_fc.bias"]
    with pytest.raises(ValueError, match=r"missing.*h\.1\.mlp\.c_fc\.bias"):
        check_params(config, params)


def test_check_params_unexpected_key(config):
    params = init_params(config)
    params["lm_head.weight"] = np.zeros((11, 8), np.float32)  # only an untied config has one
    with pytest.raises(ValueError, match=r"unexpected.*lm_head\.weight"):
        check_params(config, params)


def test_check_params_wrong_shape_names_parameter_and_shapes(config):
    params = init_params(config)
    params["h.0.attn.c_attn.weight"] = params["h.0.attn.c_attn.weight"].T  # (out, in): the wrong orientation
    with pytest.raises(ValueError) as error:
        check_params(config, params)
    message = str(error.value)
    assert "h.0.attn.c_attn.weight" in message
    assert "(24, 8)" in message and "(8, 24)" in message


def test_check_params_other_config(config):
    with pytest.raises(ValueError):
        check_params(config.replace(n_layer=3), init_params(config))
    with pytest.raises(ValueError):
        check_params(config.replace(vocab_size=12), init_params(config))
