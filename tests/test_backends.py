"""Each backend against the numpy reference (core.model.reference): logits, loss, attention, KV cache,
parameter round trips, errors. Parametrized over backends by the `backend` fixture.

tinygrad compiles every new tensor shape (about 1-4 s each here), so most tests reuse two fixed
configs at fixed shapes and let hypothesis draw the data; one test draws whole configs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backends import BACKENDS, get_backend, resolve_name
from core.model import reference
from core.model.config import GPTConfig
from core.model.params import init_params

# Max-abs tolerance on logits (magnitudes up to ~10 with lively_params). Measured here: torch
# 2e-6, tinygrad of the same order (float32 round-off); a wrong mask, bias or scale is O(0.1).
LOGITS_ATOL = 1e-4

CONFIGS = {
    "tied-bias": GPTConfig(vocab_size=37, block_size=12, n_layer=2, n_head=2, n_embd=16),
    "untied-nobias": GPTConfig(
        vocab_size=29, block_size=10, n_layer=1, n_head=4, n_embd=32, bias=False, tie_embeddings=False
    ),
}
BATCH = 2  # every fixed-config test feeds (BATCH, block_size) tokens, so tinygrad compiles once


def lively_params(config: GPTConfig, seed: int) -> dict[str, np.ndarray]:
    """Parameters far from GPT-2's init: non-zero biases, LayerNorm gains away from one and weights
    large enough that attention is far from uniform, so a dropped or misplaced term shows."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, value in init_params(config, seed).items():
        noise = rng.standard_normal(value.shape)
        if value.ndim == 1:
            params[name] = value + 0.2 * noise
        elif name in ("wte.weight", "wpe.weight", "lm_head.weight"):
            params[name] = 0.5 * noise
        else:
            params[name] = noise / math.sqrt(value.shape[0])  # (in, out): unit-variance outputs
    return {name: value.astype(np.float32) for name, value in params.items()}


def tokens_for(config: GPTConfig, seed: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, config.vocab_size, shape or (BATCH, config.block_size))


seeds = st.integers(0, 2**32 - 1)
config_names = pytest.mark.parametrize("name", sorted(CONFIGS))


# ---- forward pass


@config_names
@given(seed=seeds)
def test_logits_match_reference(backend, name, seed):
    config = CONFIGS[name]
    params, tokens = lively_params(config, seed), tokens_for(config, seed)
    logits = backend.build(config, params).logits(tokens)
    assert logits.dtype == np.float32 and logits.shape == (*tokens.shape, config.vocab_size)
    assert np.abs(logits - reference.logits(config, params, tokens)).max() < LOGITS_ATOL


@st.composite
def drawn_cases(draw):
    n_head = draw(st.sampled_from([1, 2, 4]))
    config = GPTConfig(
        vocab_size=draw(st.integers(5, 300)),
        block_size=draw(st.integers(1, 12)),
        n_layer=draw(st.integers(1, 3)),
        n_head=n_head,
        n_embd=n_head * draw(st.integers(4, 16)),
        bias=draw(st.booleans()),
        tie_embeddings=draw(st.booleans()),
    )
    seed = draw(seeds)
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, config.block_size)))
    return config, lively_params(config, seed), tokens_for(config, seed, shape)


# Parameter lengths that 16 does not divide (44, 132, ...): before tinygrad's flat optimizer views were
# aligned (buffers.ALIGN), a wide vector load met an unaligned view here and faulted (a CI segfault).
ODD = GPTConfig(vocab_size=32, block_size=9, n_layer=1, n_head=4, n_embd=44, bias=True, tie_embeddings=False)


@given(drawn_cases())
@example((ODD, lively_params(ODD, 5), tokens_for(ODD, 5, (1, 3))))  # always tried
def test_logits_match_reference_on_drawn_configs(backend, case):
    config, params, tokens = case
    logits = backend.build(config, params).logits(tokens)
    assert np.abs(logits - reference.logits(config, params, tokens)).max() < LOGITS_ATOL


@config_names
@given(seed=seeds)
def test_loss_matches_reference(backend, name, seed):
    config = CONFIGS[name]
    params, tokens = lively_params(config, seed), tokens_for(config, seed)
    targets = tokens_for(config, seed + 1)
    targets[0, : config.block_size // 2] = -1  # ignored positions
    expected = reference.loss(config, params, tokens, targets)
    assert backend.build(config, params).loss(tokens, targets) == pytest.approx(expected, abs=1e-5)


def test_loss_with_every_target_ignored_is_zero(backend):
    config = CONFIGS["tied-bias"]
    params, tokens = lively_params(config, 0), tokens_for(config, 0)
    targets = np.full_like(tokens, -1)
    assert reference.loss(config, params, tokens, targets) == 0.0
    assert backend.build(config, params).loss(tokens, targets) == 0.0


@config_names
@given(data=st.data())
def test_causal(backend, name, data):
    config = CONFIGS[name]
    seed = data.draw(seeds, label="seed")
    params, tokens = lively_params(config, seed), tokens_for(config, seed)
    model = backend.build(config, params)
    t = data.draw(st.integers(0, config.block_size - 1), label="t")
    changed = tokens.copy()
    changed[0, t] = (tokens[0, t] + data.draw(st.integers(1, config.vocab_size - 1), label="shift")) % config.vocab_size
    before, after = model.logits(tokens), model.logits(changed)
    # A leak through the mask moves logits by O(0.1); 1e-6 leaves room for reordered round-off.
    np.testing.assert_allclose(after[:, :t], before[:, :t], rtol=0, atol=1e-6)
    np.testing.assert_allclose(after[1:], before[1:], rtol=0, atol=1e-6)  # the other row is untouched
    assert np.abs(after[0, t] - before[0, t]).max() > 1e-3  # and the change does show where it should


@given(seed=seeds)
def test_each_batch_row_equals_that_row_alone(backend, seed):
    config = CONFIGS["tied-bias"]
    params, tokens = lively_params(config, seed), tokens_for(config, seed)
    model = backend.build(config, params)
    together = model.logits(tokens)
    for b in range(BATCH):
        np.testing.assert_allclose(model.logits(tokens[b : b + 1]), together[b : b + 1], rtol=0, atol=1e-5)


@config_names
def test_attention_maps_match_reference(backend, name):
    config = CONFIGS[name]
    params, tokens = lively_params(config, 1), tokens_for(config, 1)
    maps = backend.build(config, params).attention_maps(tokens)
    expected = reference.forward(config, params, tokens)[1]
    assert len(maps) == config.n_layer
    for got, want in zip(maps, expected):
        assert got.shape == (BATCH, config.n_head, config.block_size, config.block_size)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


# ---- KV cache


@config_names
def test_kv_cache_matches_full_forward(backend, name):
    config = CONFIGS[name]
    params = lively_params(config, 2)
    model = backend.build(config, params)
    with pytest.raises(RuntimeError):
        model.decode(np.zeros(BATCH, dtype=np.int64))  # no prefill yet
    prompt = config.block_size // 3
    # Two generations on one model: the second reuses a cache full of the first one's keys.
    for seed in (3, 4):
        tokens = tokens_for(config, seed)
        full = reference.logits(config, params, tokens)
        got = model.prefill(tokens[:, :prompt])
        assert got.shape == (BATCH, config.vocab_size)
        assert np.abs(got - full[:, prompt - 1]).max() < LOGITS_ATOL, "prefill"
        for pos in range(prompt, config.block_size):  # several decode steps: tinygrad's jit replays
            got = model.decode(tokens[:, pos])
            assert np.abs(got - full[:, pos]).max() < LOGITS_ATOL, f"decode at position {pos}"
    with pytest.raises(ValueError, match="block_size"):
        model.decode(tokens[:, 0])  # the cache is full


# ---- parameters in and out


@config_names
def test_params_round_trip_exactly(backend, name):
    config = CONFIGS[name]
    params = lively_params(config, 5)
    model = backend.build(config, params)
    assert model.config == config
    out = model.params()
    assert sorted(out) == sorted(params)
    for key, value in params.items():
        assert out[key].dtype == np.float32
        assert np.array_equal(out[key], value), key
    # The model holds copies: changing either side's arrays changes nothing in the other.
    out["wte.weight"][:] = 0
    params["wpe.weight"][:] = 0
    again = model.params()
    assert again["wte.weight"].any() and again["wpe.weight"].any()


@config_names
def test_load_params(backend, name):
    config = CONFIGS[name]
    first, second = lively_params(config, 6), lively_params(config, 7)
    model = backend.build(config, first)
    tokens = tokens_for(config, 8)
    model.logits(tokens)  # run once before loading: loading must reach already-built kernels
    model.load_params(second)
    assert all(np.array_equal(model.params()[k], second[k]) for k in second)
    assert np.abs(model.logits(tokens) - reference.logits(config, second, tokens)).max() < LOGITS_ATOL


def test_invalid_params_are_rejected(backend):
    config = CONFIGS["tied-bias"]
    params = init_params(config)
    missing = {k: v for k, v in params.items() if k != "h.1.attn.c_proj.weight"}
    wrong_shape = {**params, "wpe.weight": np.zeros((config.block_size + 1, config.n_embd), np.float32)}
    extra = {**params, "lm_head.weight": params["wte.weight"]}
    for bad, word in [(missing, "h.1.attn.c_proj.weight"), (wrong_shape, "wpe.weight"), (extra, "lm_head.weight")]:
        with pytest.raises(ValueError, match=word.replace(".", r"\.")):
            backend.build(config, bad)
    model = backend.build(config, params)
    for bad in (missing, wrong_shape, extra):
        with pytest.raises(ValueError):
            model.load_params(bad)
    assert all(np.array_equal(model.params()[k], params[k]) for k in params)  # nothing half-loaded


# ---- choosing a backend and a device


def test_backend_identity(backend):
    assert backend.name in BACKENDS
    versions = backend.versions()
    assert backend.name in versions and "numpy" in versions


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError) as error:
        get_backend("nope")
    message = str(error.value)
    assert "nope" in message
    for name in BACKENDS:
        assert name in message


def test_backend_name_resolution(monkeypatch):
    monkeypatch.delenv("GPT_BACKEND", raising=False)
    assert resolve_name(None) == "tinygrad"  # the documented default
    monkeypatch.setenv("GPT_BACKEND", "torch")
    assert resolve_name(None) == "torch"  # the environment variable ...
    assert resolve_name("tinygrad") == "tinygrad"  # ... loses to an explicit name
    assert resolve_name("TORCH") == "torch"
    monkeypatch.setenv("GPT_BACKEND", "nope")
    with pytest.raises(ValueError, match="nope"):
        resolve_name(None)


BOGUS_DEVICES = {"torch": "nosuchdev", "tinygrad": "NOSUCHDEV"}


def test_unknown_device_lists_available_devices(backend):
    with pytest.raises(ValueError) as error:
        get_backend(backend.name, BOGUS_DEVICES[backend.name])
    message = str(error.value)
    assert BOGUS_DEVICES[backend.name] in message
    assert backend.device.split(":")[0] in message  # the device this backend did choose is offered


def test_torch_cuda_without_a_gpu_is_a_value_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        assert get_backend("torch", "cuda").device.startswith("cuda")
        return
    with pytest.raises(ValueError, match="cpu"):
        get_backend("torch", "cuda")
