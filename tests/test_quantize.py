"""int8 weight-only quantization: the error bound per channel, the key layout, checkpoints, and both backends
computing the quantized model (against the numpy reference on the dequantized weights, and each other)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.convert.quantize import (
    INT8,
    SCALE,
    check_model_params,
    dequantize_params,
    dequantize_weight,
    quantize_params,
    quantize_weight,
    quantized_modules,
)
from core.convert.quantize_checkpoint import quantize_checkpoint
from core.data.tokenizer import train_tokenizer
from core.generate.generation import generate
from core.generate.session import Session
from core.model import reference
from core.model.config import GPTConfig
from core.model.params import init_params
from core.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from core.train.meta import CheckpointMeta

# The shapes of tests/test_interop.py's model, so tinygrad reuses kernels compiled there.
CONFIG = GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=4, n_embd=32)
LINEARS = [f"h.{i}.{m}" for i in range(2) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]


def random_params(config: GPTConfig = CONFIG, seed: int = 0) -> dict[str, np.ndarray]:
    """GPT-2 init with random biases and LayerNorm gains, so every parameter matters."""
    params = init_params(config, seed)
    rng = np.random.default_rng(seed + 100)
    for name, value in params.items():
        if value.ndim == 1:
            params[name] = (value + rng.normal(0, 0.1, value.shape)).astype(np.float32)
    return params


@given(
    arrays(np.float32, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=st.floats(-1e3, 1e3, width=32)),
    st.sampled_from([0, 1]),
)
def test_error_is_at_most_half_a_step_per_channel(weight, axis):
    q, scale = quantize_weight(weight, axis)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (weight.shape[axis],)
    assert np.abs(q.astype(np.int32)).max() <= 127
    error = np.abs(dequantize_weight(q, scale, axis).astype(np.float64) - weight)
    bound = np.expand_dims(scale.astype(np.float64), 1 - axis) / 2
    assert np.all(error <= bound * (1 + 1e-6) + 1e-30)


def test_outlier_channel_does_not_crush_the_others():
    weight = np.random.default_rng(0).normal(0, 0.02, (64, 8)).astype(np.float32)
    weight[3, 5] = 10.0  # one huge weight in output column 5
    q, scale = quantize_weight(weight, axis=1)
    error = np.abs(dequantize_weight(q, scale, 1) - weight)
    others = [c for c in range(8) if c != 5]
    assert error[:, others].max() < 0.02 / 127 * 4  # the other columns keep their own fine scale
    zero = quantize_weight(np.zeros((4, 3), np.float32), axis=1)
    assert not zero[0].any() and np.all(zero[1] > 0)  # an all-zero channel stays zero


@pytest.mark.parametrize("embeddings", [True, False])
def test_keys_and_round_trip(embeddings):
    params = random_params(CONFIG.replace(tie_embeddings=False))
    quantized = quantize_params(params, embeddings=embeddings)
    expected = LINEARS + (["wte", "lm_head"] if embeddings else [])
    assert sorted(quantized_modules(quantized)) == sorted(expected)
    assert quantized["h.0.attn.c_attn" + INT8].shape == (32, 96) and quantized["h.0.attn.c_attn" + SCALE].shape == (96,)
    assert "wpe.weight" in quantized and "h.0.ln_1.weight" in quantized and "h.0.attn.c_attn.bias" in quantized
    if embeddings:
        assert quantized["wte" + SCALE].shape == (CONFIG.vocab_size,)  # one scale per row (token)
    back = dequantize_params(quantized)
    assert back.keys() == params.keys()
    check_model_params(CONFIG.replace(tie_embeddings=False), quantized)
    for name, value in params.items():
        assert np.abs(back[name] - value).max() <= np.abs(value).max() / 254 * (1 + 1e-6)
    with pytest.raises(ValueError, match="already quantized"):
        quantize_params(quantized)


def test_bad_quantized_params_are_refused():
    quantized = quantize_params(random_params())
    broken = dict(quantized)
    del broken["h.1.mlp.c_fc" + SCALE]
    with pytest.raises(ValueError, match="no h.1.mlp.c_fc.weight_scale"):
        check_model_params(CONFIG, broken)
    wrong = {**quantized, "h.0.attn.c_proj" + INT8: quantized["h.0.attn.c_proj" + INT8].astype(np.float32)}
    with pytest.raises(ValueError, match="does not match"):
        check_model_params(CONFIG, wrong)


@pytest.fixture(scope="module")
def quantized():
    params = random_params()
    return params, quantize_params(params)


def test_backend_computes_the_dequantized_model(quantized, backend):
    params, q = quantized
    tokens = np.random.default_rng(0).integers(0, CONFIG.vocab_size, (2, CONFIG.block_size))
    model = backend.build(CONFIG, q)
    logits = model.logits(tokens)
    # Exactly the function of the dequantized weights (up to float32 round-off) ...
    assert np.abs(logits - reference.logits(CONFIG, dequantize_params(q), tokens)).max() < 1e-4
    # ... and close to the float model: the int8 error is a small fraction of the logits' spread.
    float_logits = reference.logits(CONFIG, params, tokens)
    assert np.abs(logits - float_logits).max() < 0.02 * float_logits.std()
    params_back = model.params()
    assert all(np.array_equal(params_back[k], v) for k, v in dequantize_params(q).items())
    # The KV-cache path (prefill, then one token at a time) computes the same as the full pass.
    cached = [model.prefill(tokens[:, :5])] + [model.decode(tokens[:, p]) for p in range(5, CONFIG.block_size - 1)]
    assert np.abs(np.stack(cached, axis=1) - logits[:, 4:-1]).max() < 1e-4
    with pytest.raises(NotImplementedError, match="int8"):
        model.train_step(tokens[:, :-1], tokens[:, 1:], 1e-3)
    with pytest.raises(ValueError, match="quantized differently"):
        model.load_params(params)


def test_backends_agree_on_the_quantized_model(quantized, backends):
    _, q = quantized
    tokens = np.random.default_rng(1).integers(0, CONFIG.vocab_size, (2, CONFIG.block_size))
    models = {name: b.build(CONFIG, q) for name, b in backends.items()}
    torch_logits, tinygrad_logits = (models[n].logits(tokens) for n in ("torch", "tinygrad"))
    assert np.abs(torch_logits - tinygrad_logits).max() < 1e-5
    assert generate(models["torch"], tokens[:, :5], 8) == generate(models["tinygrad"], tokens[:, :5], 8)


def test_quantized_checkpoint_is_small_and_generates(tmp_path):
    tokenizer = train_tokenizer("bpe", ["def f(x):\n    return x * 2\n"] * 20, vocab_size=300)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=4, n_embd=64)
    f32 = Checkpoint(config, random_params(config), CheckpointMeta(step=3), tokenizer.to_json())
    save_checkpoint(tmp_path / "f32", f32)
    source = load_checkpoint(tmp_path / "f32")
    save_checkpoint(tmp_path / "int8", quantize_checkpoint(source))
    loaded = load_checkpoint(tmp_path / "int8")
    assert loaded.meta.quantization == "int8" and loaded.step == 3
    assert loaded.params["wte" + INT8].dtype == np.int8 and loaded.tokenizer_json == source.tokenizer_json
    size = {name: (tmp_path / name / "model.safetensors").stat().st_size for name in ("f32", "int8")}
    assert size["int8"] <= 0.30 * size["f32"]
    with pytest.raises(ValueError, match="already quantized"):
        quantize_checkpoint(loaded)

    from backends import get_backend

    session = Session.open(get_backend("torch"), tmp_path / "int8")
    session.settings.temperature, session.settings.max_new_tokens = 0.0, 8
    text, _ = session.generate("def ")
    float_session = Session.open(get_backend("torch"), tmp_path / "f32")
    float_session.settings.temperature, float_session.settings.max_new_tokens = 0.0, 8
    assert isinstance(text, str) and isinstance(float_session.generate("def ")[0], str)


def test_cli_quantize(tmp_path, capsys):
    import train_next_word_prediction as cli

    tokenizer = train_tokenizer("char", ["abcabc"])
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=16)
    last = Checkpoint(config, random_params(config), CheckpointMeta(), tokenizer.to_json())
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last", last)
    assert cli.main(["quantize", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "q")]) == 0
    assert "of the float32" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "q").meta.quantization == "int8"
    generate_args = ["generate", "--checkpoint", str(tmp_path / "q"), "--prompt", "ab", "--max-new-tokens", "4"]
    assert cli.main([*generate_args, "--backend", "torch"]) == 0
    assert cli.main([*generate_args, "--backend", "tinygrad", "--dtype", "float16"]) == 0  # int8 weights, half compute
    capsys.readouterr()
    if cli.main([*generate_args, "--backend", "tinygrad", "--dtype", "bfloat16"]) == 2:  # where clang lacks __bf16
        assert "tinygrad cannot compute in bfloat16" in capsys.readouterr().err
    assert cli.main(["quantize", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "run")]) == 2
    assert "not a checkpoint folder" in capsys.readouterr().err
