"""tinygrad data parallelism in one process: weights replicated over a tuple of devices, each
training batch split along its batch axis (`--devices CPU:0,CPU:1` here, CUDA:0,CUDA:1 on GPUs)."""

from __future__ import annotations

import numpy as np
import pytest

from backends import get_backend
from core.model.config import GPTConfig
from core.model.params import init_params

CONFIG = GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)


@pytest.fixture(scope="module")
def two_cpus():
    try:
        return get_backend("tinygrad", "CPU:0,CPU:1")
    except ValueError as err:  # a tinygrad without a second CPU device
        pytest.skip(f"tinygrad offers no two CPU devices here: {err}")


def test_two_devices_train_like_one(two_cpus, backends):
    params = init_params(CONFIG, seed=0)
    sharded, single = two_cpus.build(CONFIG, params), backends["torch"].build(CONFIG, params)
    x = np.random.default_rng(0).integers(0, 50, (1, 4, 17))
    assert np.abs(sharded.logits(x[0, :, :-1]) - single.logits(x[0, :, :-1])).max() < 1e-5
    for _ in range(3):
        assert sharded.train_step(x[..., :-1], x[..., 1:], 1e-3) == pytest.approx(
            single.train_step(x[..., :-1], x[..., 1:], 1e-3), rel=1e-6
        )
    after, expected = sharded.params(), single.params()
    assert max(np.abs(after[k] - expected[k]).max() for k in expected) < 1e-4  # Adam amplifies round-off
    assert int(sharded.optimizer_state()["step"][0]) == 3
    prompt = x[0, :, :5]
    assert np.abs(sharded.prefill(prompt) - single.prefill(prompt)).max() < 1e-5


def test_batch_must_split_evenly(two_cpus):
    model = two_cpus.build(CONFIG, init_params(CONFIG))
    x = np.zeros((1, 3, 8), dtype=np.int64)
    with pytest.raises(ValueError, match="does not split evenly over 2 devices"):
        model.train_step(x, x, 1e-3)


def test_repeated_devices_are_refused():
    with pytest.raises(ValueError, match="repeat"):
        get_backend("tinygrad", "CPU:0,CPU:0")


def test_a_device_other_than_the_default_runs_everything(backends):
    """`--device CPU:1`: positions, masks and caches live with the weights, not on tinygrad's default device."""
    try:
        other = get_backend("tinygrad", "CPU:1")
    except ValueError as err:
        pytest.skip(f"tinygrad offers no second CPU device here: {err}")
    params = init_params(CONFIG, seed=0)
    model, reference = other.build(CONFIG, params), backends["torch"].build(CONFIG, params)
    x = np.random.default_rng(1).integers(0, 50, (1, 2, 9))
    assert np.abs(model.logits(x[0, :, :-1]) - reference.logits(x[0, :, :-1])).max() < 1e-5
    assert model.train_step(x[..., :-1], x[..., 1:], 1e-3) == pytest.approx(
        reference.train_step(x[..., :-1], x[..., 1:], 1e-3), rel=1e-6)
    prompt = x[0, :, :4]
    assert np.abs(model.prefill(prompt) - reference.prefill(prompt)).max() < 1e-5
    step = x[0, :, 4]  # one token per row (B,)
    assert np.abs(model.decode(step) - reference.decode(step)).max() < 1e-5
