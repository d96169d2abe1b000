"""`--dtype` for generation: lower precision is computed where it is claimed, or refused with a reason."""

from __future__ import annotations

import numpy as np
import pytest

from core.model.config import GPTConfig, TrainConfig
from core.model.params import init_params

CONFIG = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)


def test_torch_bfloat16_generation_computes_in_bfloat16(backends):
    """Prefill and decode (the generation path) run under autocast like the full forward pass."""
    params = init_params(CONFIG, seed=0)
    full, half = (backends["torch"].build(CONFIG, params, TrainConfig(dtype=d)) for d in ("float32", "bfloat16"))
    tokens = np.random.default_rng(0).integers(0, 64, (2, 6))
    for model in (full, half):
        model.prefill(tokens[:, :5])
    assert half.cache.k[0].dtype.is_floating_point and str(half.cache.k[0].dtype) == "torch.bfloat16"
    first = half.prefill(tokens[:, :5])
    step_full, step_half = full.decode(tokens[:, 5]), half.decode(tokens[:, 5])
    # bfloat16 keeps 8 bits of mantissa: results move by about 1e-2, never by nothing.
    assert not np.array_equal(first, full.prefill(tokens[:, :5]))
    assert not np.array_equal(step_half, step_full)
    assert np.abs(step_half - step_full).max() < 0.1
    # ... and the cached path agrees with the full bfloat16 forward pass on the same tokens.
    assert np.abs(first - half.logits(tokens[:, :5])[:, -1]).max() < 0.05


def test_tinygrad_float16_generation_computes_in_float16(backends):
    params = init_params(CONFIG, seed=0)
    full, half = (backends["tinygrad"].build(CONFIG, params, TrainConfig(dtype=d)) for d in ("float32", "float16"))
    tokens = np.random.default_rng(0).integers(0, 64, (2, 6))
    first_full, first_half = full.prefill(tokens[:, :5]), half.prefill(tokens[:, :5])
    step_full, step_half = full.decode(tokens[:, 5]), half.decode(tokens[:, 5])
    assert str(half.cache.k[0].dtype) == "dtypes.half"
    assert first_half.dtype == np.float32 and not np.array_equal(first_half, first_full)
    assert np.abs(first_half - first_full).max() < 0.02 and np.abs(step_half - step_full).max() < 0.02
    assert np.abs(half.logits(tokens[:, :5])[:, -1] - first_half).max() < 0.02
    with pytest.raises(NotImplementedError, match="training in float16 is not implemented in the tinygrad backend"):
        half.train_step(tokens[None, :, :-1], tokens[None, :, 1:], 1e-3)


def test_tinygrad_bfloat16_runs_or_says_why_not(backends):
    """bfloat16 where the device compiles it (GPUs); on an x86 CPU clang has no __bf16: a one-line reason."""
    params = init_params(CONFIG, seed=0)
    try:
        model = backends["tinygrad"].build(CONFIG, params, TrainConfig(dtype="bfloat16"))
    except ValueError as err:
        assert "tinygrad cannot compute in bfloat16" in str(err) and "\n" not in str(err)
        return
    full = backends["tinygrad"].build(CONFIG, params)
    tokens = np.random.default_rng(0).integers(0, 64, (2, 5))
    assert np.abs(model.prefill(tokens) - full.prefill(tokens)).max() < 0.1
