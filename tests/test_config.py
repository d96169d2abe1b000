"""core/model/config.py: validation of GPTConfig and TrainConfig, presets, dict round trips."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.model.config import PRESETS, GPTConfig, TrainConfig, field_help, preset
from core.model.params import count_params


def assert_names_value(error: pytest.ExceptionInfo, name: str, value: object) -> None:
    """The message must say which setting is wrong and what it was set to."""
    message = str(error.value)
    assert f"{name}={value!r}" in message or f"{name}={value}" in message, message


def closed_form_count(config: GPTConfig) -> int:
    """The parameter count written out by hand, independently of core.model.params (GPT-2, and the
    Llama-family options: GQA keys/values, a SwiGLU MLP's third matrix, RMSNorm without bias, no wpe)."""
    C, V, L, F = config.n_embd, config.vocab_size, config.n_layer, config.mlp_hidden
    kv = config.kv_heads * config.head_size
    mlp_in = 2 * F if config.mlp == "swiglu" else F  # SwiGLU's gate and up side by side
    per_layer = C * (C + 2 * kv) + C * C + C * mlp_in + F * C  # c_attn, attn.c_proj, c_fc, mlp.c_proj
    per_layer += 2 * C  # ln_1 and ln_2 gains
    norm_bias = config.bias and config.norm == "layernorm"
    if config.bias:
        per_layer += (C + 2 * kv) + C + mlp_in + C  # the four Linear biases
    if norm_bias:
        per_layer += 2 * C  # the two LayerNorm biases
    wpe = config.block_size * C if config.position == "learned" else 0
    total = V * C + wpe + L * per_layer + C * (2 if norm_bias else 1)  # ..., ln_f
    return total + (0 if config.tie_embeddings else V * C)


@st.composite
def gpt_configs(draw) -> GPTConfig:
    n_head = draw(st.integers(1, 8))
    return GPTConfig(
        vocab_size=draw(st.integers(1, 70000)),
        block_size=draw(st.integers(1, 4096)),
        n_layer=draw(st.integers(1, 48)),
        n_head=n_head,
        n_embd=n_head * draw(st.integers(1, 128)),
        dropout=draw(st.floats(0.0, 0.999)),
        bias=draw(st.booleans()),
        tie_embeddings=draw(st.booleans()),
        layer_norm_eps=draw(st.floats(1e-12, 1e-2)),
    )


# ---- GPTConfig validation

BAD_GPT_FIELDS = [
    ("vocab_size", 0),
    ("vocab_size", -5),
    ("block_size", 0),
    ("n_layer", 0),
    ("n_layer", -1),
    ("n_layer", 2.5),
    ("n_head", 0),
    ("n_head", True),  # a bool is an int to Python, but never a size
    ("n_embd", 0),
    ("n_embd", 32.0),
    ("dropout", -0.1),
    ("dropout", 1.0),
    ("dropout", 1.5),
    ("dropout", float("nan")),
    ("layer_norm_eps", 0.0),
    ("layer_norm_eps", -1e-5),
]


@pytest.mark.parametrize(("name", "value"), BAD_GPT_FIELDS)
def test_gpt_config_rejects_bad_value_and_names_it(name, value):
    with pytest.raises(ValueError) as error:
        GPTConfig(**{name: value})
    assert_names_value(error, name, value)


def test_n_embd_not_divisible_by_n_head_names_both():
    with pytest.raises(ValueError) as error:
        GPTConfig(n_embd=30, n_head=4)
    assert_names_value(error, "n_embd", 30)
    assert_names_value(error, "n_head", 4)


@given(st.integers(1, 512), st.integers(1, 32))
def test_divisibility_is_the_only_constraint_between_width_and_heads(n_embd, n_head):
    if n_embd % n_head:
        with pytest.raises(ValueError):
            GPTConfig(n_embd=n_embd, n_head=n_head)
    else:
        config = GPTConfig(n_embd=n_embd, n_head=n_head)
        assert config.head_size * config.n_head == n_embd
        assert config.mlp_hidden == 4 * n_embd


def test_gpt_config_is_frozen_and_replace_validates_again():
    config = GPTConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_layer = 3  # type: ignore[misc]
    assert config.replace(n_layer=3).n_layer == 3
    assert config.n_layer != 3  # replace made a copy
    with pytest.raises(ValueError) as error:
        config.replace(n_head=3)  # 32 is not divisible by 3
    assert_names_value(error, "n_head", 3)


# ---- TrainConfig validation

BAD_TRAIN_FIELDS = [
    ("steps", 0),
    ("steps", 1.5),
    ("batch_size", 0),
    ("grad_accum", 0),
    ("grad_accum", -1),
    ("eval_every", 0),
    ("eval_batches", 0),
    ("lr", 0.0),
    ("lr", -1e-3),
    ("min_lr", -1e-5),
    ("min_lr", 2e-3),  # above lr=1e-3
    ("warmup_steps", -1),
    ("schedule", "exponential"),
    ("beta1", 1.0),
    ("beta1", -0.1),
    ("beta2", 1.5),
    ("weight_decay", -0.1),
    ("eps", 0.0),
    ("grad_clip", -1.0),
    ("patience", -1),
    ("dtype", "float64"),
]


@pytest.mark.parametrize(("name", "value"), BAD_TRAIN_FIELDS)
def test_train_config_rejects_bad_value_and_names_it(name, value):
    with pytest.raises(ValueError) as error:
        TrainConfig(**{name: value})
    assert_names_value(error, name, value)


def test_nan_learning_rate_is_rejected():
    with pytest.raises(ValueError) as error:
        TrainConfig(lr=float("nan"))
    assert_names_value(error, "lr", float("nan"))


def test_infinite_learning_rate_is_rejected():
    with pytest.raises(ValueError):
        TrainConfig(lr=math.inf)


def test_train_config_boundary_values_are_accepted():
    config = TrainConfig(lr=1e-3, min_lr=1e-3, warmup_steps=0, weight_decay=0.0, grad_clip=0.0, beta1=0.0)
    assert (config.min_lr, config.grad_clip, config.weight_decay) == (1e-3, 0.0, 0.0)
    assert TrainConfig(min_lr=0.0).min_lr == 0.0
    with pytest.raises(ValueError):
        TrainConfig().replace(lr=-1.0)


def test_every_field_has_help_text():
    for cls in (GPTConfig, TrainConfig):
        helps = field_help(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not helps.get(f.name)]
        assert not missing, f"{cls.__name__} fields without an inline comment: {missing}"


# ---- presets


def test_preset_names():
    assert set(PRESETS) == {"demo", "tiny", "small", "medium", "gpt2", "llama-tiny", "smollm-135m"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_builds_with_its_sizes(name):
    config = preset(name)
    for field, value in PRESETS[name].items():
        assert getattr(config, field) == value
    assert count_params(config) == closed_form_count(config)
    untied = preset(name, tie_embeddings=False)
    assert count_params(untied) == closed_form_count(untied) == count_params(config) + config.vocab_size * config.n_embd


def test_gpt2_preset_has_gpt2_small_size():
    # 124,439,808: the published size of GPT-2 small (Hugging Face `gpt2`, tied head, biases).
    assert count_params(preset("gpt2")) == 124_439_808


def test_small_preset_has_about_23m_params_at_vocab_8192():
    # The "about 27M" is the untied count; GPT-2 ties the head, as our default does.
    assert abs(count_params(preset("small", vocab_size=8192)) - 23.2e6) < 0.1e6
    assert abs(count_params(preset("small", vocab_size=8192, tie_embeddings=False)) - 27.4e6) < 0.1e6


def test_small_preset_size_at_vocab_8192_is_in_the_tens_of_millions():
    tied = count_params(preset("small", vocab_size=8192))
    assert 20e6 < tied < 30e6
    assert count_params(preset("small", vocab_size=8192, tie_embeddings=False)) - tied == 8192 * 512


def test_preset_overrides_apply_and_are_validated():
    config = preset("demo", vocab_size=100, dropout=0.1, bias=False)
    assert (config.vocab_size, config.dropout, config.bias, config.n_embd) == (100, 0.1, False, 32)
    with pytest.raises(ValueError) as error:
        preset("demo", n_head=5)
    assert_names_value(error, "n_head", 5)


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(ValueError) as error:
        preset("huge")
    message = str(error.value)
    assert "huge" in message
    for name in PRESETS:
        assert name in message


# ---- dict round trips (checkpoint metadata)


@given(gpt_configs())
def test_gpt_config_dict_round_trip(config):
    values = config.to_dict()
    assert set(values) == {f.name for f in dataclasses.fields(GPTConfig)}
    assert GPTConfig.from_dict(values) == config
    assert GPTConfig.from_dict(json.loads(json.dumps(values))) == config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_dict_round_trip(name):
    config = preset(name)
    assert GPTConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_from_dict_fills_defaults_and_rejects_unknown_fields():
    assert GPTConfig.from_dict({"n_layer": 3}) == GPTConfig(n_layer=3)
    with pytest.raises(ValueError) as error:
        GPTConfig.from_dict({"n_layers": 3})
    assert "n_layers" in str(error.value)
    assert "n_layer" in str(error.value).split("valid fields")[-1]
    with pytest.raises(ValueError):
        GPTConfig.from_dict({"n_embd": 30, "n_head": 4})  # values are validated too


def test_train_config_dict_round_trip():
    config = TrainConfig(lr=3e-4, min_lr=3e-5, schedule="linear", grad_accum=4, grad_clip=0.0, dtype="bfloat16")
    values = config.to_dict()
    assert set(values) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert TrainConfig(**json.loads(json.dumps(values))) == config
