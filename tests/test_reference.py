"""core/model/reference.py, the numpy oracle: properties it must have before anything is compared to it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.model import reference
from core.model.config import GPTConfig
from core.model.params import init_params


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


@st.composite
def cases(draw):
    """A small config, parameters and a batch of tokens of any length up to block_size."""
    n_head = draw(st.sampled_from([1, 2]))
    config = GPTConfig(
        vocab_size=draw(st.integers(2, 40)),
        block_size=draw(st.integers(1, 10)),
        n_layer=draw(st.integers(1, 2)),
        n_head=n_head,
        n_embd=n_head * draw(st.integers(4, 8)),  # LayerNorm over 2 channels only keeps a sign
        bias=draw(st.booleans()),
        tie_embeddings=draw(st.booleans()),
    )
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    B, T = draw(st.integers(1, 3)), draw(st.integers(1, config.block_size))
    return config, lively_params(config, seed), rng.integers(0, config.vocab_size, (B, T))


def nll_by_hand(logits: np.ndarray, targets: np.ndarray, ignore_index: int = -1) -> float:
    """Mean of -log softmax(logits)[target] over kept positions, one position at a time in Python floats."""
    terms = []
    for index in np.ndindex(targets.shape):
        target = int(targets[index])
        if target == ignore_index:
            continue
        row = [float(v) for v in logits[index]]
        top = max(row)
        log_sum_exp = top + math.log(math.fsum(math.exp(v - top) for v in row))
        terms.append(log_sum_exp - row[target])
    return math.fsum(terms) / len(terms) if terms else 0.0


@given(cases(), st.data())
def test_causal(case, data):
    config, params, tokens = case
    T = tokens.shape[1]
    t = data.draw(st.integers(0, T - 1), label="t")
    changed = tokens.copy()
    changed[0, t] = (tokens[0, t] + data.draw(st.integers(1, config.vocab_size - 1), label="shift")) % config.vocab_size
    before, after = reference.forward(config, params, tokens)[0], reference.forward(config, params, changed)[0]
    assert np.array_equal(before[:, :t], after[:, :t])  # earlier positions: bit for bit
    assert np.array_equal(before[1:], after[1:])  # other rows: untouched
    assert np.abs(before[0, t] - after[0, t]).max() > 1e-6  # the change itself does show


@given(cases())
def test_batch_rows_are_independent(case):
    config, params, tokens = case
    together = reference.forward(config, params, tokens)[0]
    for b in range(tokens.shape[0]):
        alone = reference.forward(config, params, tokens[b : b + 1])[0]
        np.testing.assert_allclose(together[b : b + 1], alone, rtol=1e-12, atol=1e-12)


@given(cases(), st.data())
def test_prefix_gives_the_same_logits(case, data):
    config, params, tokens = case
    k = data.draw(st.integers(1, tokens.shape[1]), label="k")
    full = reference.forward(config, params, tokens)[0]
    np.testing.assert_allclose(reference.forward(config, params, tokens[:, :k])[0], full[:, :k], rtol=1e-12, atol=1e-12)


@given(cases())
def test_attention_weights_are_causal_distributions(case):
    config, params, tokens = case
    B, T = tokens.shape
    maps = reference.forward(config, params, tokens)[1]
    assert len(maps) == config.n_layer
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    for weights in maps:
        assert weights.shape == (B, config.n_head, T, T)
        assert (weights >= 0).all()
        np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
        assert not weights[..., future].any()  # exactly zero above the diagonal
        np.testing.assert_array_equal(weights[..., 0, 0], 1.0)  # the first position sees only itself


def test_attention_is_not_uniform_for_lively_params():
    # Guards the helper: the tests above would pass vacuously on near-uniform attention.
    config = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16)
    weights = reference.forward(config, lively_params(config, 0), np.arange(8)[None] % 20)[1][0]
    assert weights[..., -1, :].max() > 2 / 8


def test_forward_dtypes():
    config = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16)
    params, tokens = init_params(config), np.zeros((2, 5), dtype=np.int64)
    logits64, maps = reference.forward(config, params, tokens)
    assert logits64.dtype == np.float64 and logits64.shape == (2, 5, 20)
    assert maps[0].dtype == np.float64
    logits32 = reference.logits(config, params, tokens)
    assert logits32.dtype == np.float32
    np.testing.assert_array_equal(logits32, logits64.astype(np.float32))


def test_longer_than_block_size_raises():
    config = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16)
    params = init_params(config)
    reference.forward(config, params, np.zeros((1, 8), dtype=np.int64))  # exactly block_size is fine
    with pytest.raises(ValueError, match="block_size=8"):
        reference.forward(config, params, np.zeros((1, 9), dtype=np.int64))
    with pytest.raises(ValueError):
        reference.loss(config, params, np.zeros((1, 9), dtype=np.int64), np.zeros((1, 9), dtype=np.int64))


# ---- cross-entropy


@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 3),
    st.integers(1, 6),
    st.integers(2, 20),
    st.floats(0.01, 100.0),
    st.floats(0.0, 1.0),
)
def test_cross_entropy_is_mean_nll_over_kept_targets(seed, B, T, V, scale, ignored):
    rng = np.random.default_rng(seed)
    logits = scale * rng.standard_normal((B, T, V))
    targets = rng.integers(0, V, (B, T))
    targets[rng.random((B, T)) < ignored] = -1
    expected = nll_by_hand(logits, targets)
    assert reference.cross_entropy(logits, targets) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # Logits at ignored positions do not matter at all.
    scrambled = logits.copy()
    scrambled[targets == -1] = rng.standard_normal(scrambled[targets == -1].shape)
    assert reference.cross_entropy(scrambled, targets) == reference.cross_entropy(logits, targets)


def test_cross_entropy_edge_cases():
    logits = np.array([[[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]]])  # exp(1000) would overflow
    assert reference.cross_entropy(logits, np.array([[0, -1]])) == pytest.approx(0.0, abs=1e-12)
    assert reference.cross_entropy(logits, np.array([[2, -1]])) == pytest.approx(2000.0)
    assert reference.cross_entropy(logits, np.array([[-1, 1]])) == pytest.approx(math.log(3))
    assert reference.cross_entropy(logits, np.array([[-1, -1]])) == 0.0  # nothing to average: 0, not nan
    # another ignore index: -1 is then an ordinary (out of range) label, so use -100
    assert reference.cross_entropy(logits, np.array([[-100, 1]]), ignore_index=-100) == pytest.approx(math.log(3))


@given(cases(), st.data())
def test_loss_is_minus_log_softmax_of_the_logits(case, data):
    config, params, tokens = case
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, config.vocab_size, tokens.shape)
    targets[rng.random(tokens.shape) < 0.3] = -1
    expected = nll_by_hand(reference.forward(config, params, tokens)[0], targets)
    assert reference.loss(config, params, tokens, targets) == pytest.approx(expected, rel=1e-12, abs=1e-12)


# ---- building blocks


@given(st.integers(0, 2**32 - 1), st.integers(2, 64), st.floats(0.01, 100.0))
def test_layer_norm_normalises(seed, C, scale):
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal((3, C)) + rng.standard_normal((3, 1))
    y = reference.layer_norm(x, np.ones(C), None, eps=1e-12)
    np.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-9)
    var = x.var(axis=-1)
    np.testing.assert_allclose(y.std(axis=-1), np.sqrt(var / (var + 1e-12)), rtol=1e-9)  # 1 but for eps
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    np.testing.assert_allclose(reference.layer_norm(x, w, b, eps=1e-12), y * w + b, rtol=1e-12, atol=1e-12)


def test_gelu_is_the_tanh_approximation():
    x = np.linspace(-6, 6, 1001)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])  # the erf form
    approx = reference.gelu(x)
    assert np.abs(approx - exact).max() < 1e-3  # close to the erf GELU ...
    assert np.abs(approx - exact).max() > 1e-5  # ... but not it: GPT-2 used the tanh form
    assert reference.gelu(np.array([0.0]))[0] == 0.0
