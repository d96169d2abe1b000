"""Properties of `core.generate.sampling`, checked against direct numpy computations (no framework needed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.generate.sampling import SamplingConfig, sample, sample_with_stats, sampling_probs
from core.model.softmax import entropy, softmax

# Logits (B, V) with moderate values; ties are allowed and do occur (the elements are drawn from a
# small grid half of the time).
finite = st.one_of(st.floats(-20, 20, allow_nan=False, width=32), st.integers(-3, 3).map(float))
logits_arrays = st.tuples(st.integers(1, 4), st.integers(2, 40)).flatmap(
    lambda shape: arrays(np.float32, shape, elements=finite)
)
seeds = st.integers(0, 2**32 - 1)
temperatures = st.floats(0.05, 5.0)


def naive_softmax(x: np.ndarray) -> np.ndarray:
    """softmax written differently from the module's: via log-sum-exp, one row at a time."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    for i, row in enumerate(x):
        finite_row = row[np.isfinite(row)]
        lse = np.log(np.sum(np.exp(finite_row - finite_row.max()))) + finite_row.max()
        out[i] = np.exp(row - lse)
    return out


@given(logits_arrays, st.integers(1, 45), temperatures, seeds)
def test_top_k_stays_inside_the_k_most_likely(logits, k, temperature, seed):
    tokens = sample(logits, SamplingConfig(temperature, top_k=k), np.random.default_rng(seed))
    for row, token in zip(logits, tokens):
        kth_largest = np.sort(row)[::-1][min(k, len(row)) - 1]
        assert row[token] >= kth_largest  # ties with the k-th are part of "the k most likely"


@given(logits_arrays, st.floats(0.01, 1.0), temperatures, seeds)
def test_top_p_stays_inside_the_nucleus(logits, p, temperature, seed):
    config = SamplingConfig(temperature, top_p=p)
    tokens = sample(logits, config, np.random.default_rng(seed))
    probs = naive_softmax(logits.astype(np.float64) / temperature)
    for row, token in zip(probs, tokens):
        ordered = np.sort(row)[::-1]
        # the smallest number of most likely tokens whose probability reaches p (the 1e-9 allows
        # for the two cumulative sums rounding differently)
        n = int(np.searchsorted(np.cumsum(ordered), p + 1e-9)) + 1
        assert row[token] >= ordered[min(n, len(row)) - 1]


@given(logits_arrays, st.integers(1, 10), st.floats(0.05, 1.0), temperatures)
def test_filters_only_remove_mass_and_renormalise(logits, k, p, temperature):
    """Each kept token keeps its temperature-scaled probability, up to one common factor."""
    probs = sampling_probs(logits, SamplingConfig(temperature, top_k=k, top_p=p))
    assert np.allclose(probs.sum(axis=-1), 1.0)
    scaled = naive_softmax(logits.astype(np.float64) / temperature)
    for row, base in zip(probs, scaled):
        kept = row > 0
        assert 1 <= kept.sum() <= (base >= np.sort(base)[::-1][min(k, len(base)) - 1]).sum()
        normal = kept & (base > 1e-290)  # leave out probabilities that underflow to subnormals
        ratio = row[normal] / base[normal]
        assert np.allclose(ratio, ratio[0], rtol=1e-9)
        assert base[kept].min() >= base[~kept].max(initial=0)  # never drops a likelier token


@given(logits_arrays, seeds)
def test_temperature_near_zero_is_greedy(logits, seed):
    top2 = np.sort(logits.astype(np.float64), axis=-1)[:, -2:]
    assume((top2[:, 1] - top2[:, 0]).min() > 1e-2)  # a unique maximum, clear of round-off
    greedy = sample(logits, SamplingConfig(0.0))
    cold = sample(logits, SamplingConfig(1e-6), np.random.default_rng(seed))
    assert np.array_equal(greedy, logits.argmax(axis=-1))
    assert np.array_equal(cold, greedy)


optional_k = st.one_of(st.none(), st.integers(1, 10))


@given(logits_arrays, seeds, temperatures, optional_k, st.one_of(st.none(), st.floats(0.1, 1)))
def test_fixed_seed_repeats_exactly(logits, seed, temperature, k, p):
    config = SamplingConfig(temperature, k, p)
    a = sample(logits, config, np.random.default_rng(seed))
    b, _ = sample_with_stats(logits, config, np.random.default_rng(seed))  # draws exactly what sample draws
    assert np.array_equal(a, b)
    # one generator per row: each row's draw is that row sampled alone with its generator
    per_row = sample(logits, config, [np.random.default_rng(seed + i) for i in range(len(logits))])
    alone = [sample(logits[i : i + 1], config, np.random.default_rng(seed + i))[0] for i in range(len(logits))]
    assert per_row.tolist() == alone


@given(logits_arrays, seeds, st.floats(0.3, 3.0), optional_k)
def test_stats_match_numpy(logits, seed, temperature, k):
    config = SamplingConfig(temperature, top_k=k)
    tokens, stats = sample_with_stats(logits, config, np.random.default_rng(seed))
    model = naive_softmax(logits)
    scaled = logits.astype(np.float64) / temperature
    for i, (row, token) in enumerate(zip(logits, tokens)):
        ordered = sorted(row.tolist(), reverse=True)
        assert stats.rank[i] == ordered.index(row[token])  # the first position of its value: ties share a rank
        assert np.isclose(stats.prob[i], model[i, token], rtol=1e-9)
        assert np.isclose(stats.model_entropy[i], -np.sum(model[i] * np.log(np.maximum(model[i], 1e-300))), atol=1e-9)
        kept = scaled[i] >= np.sort(scaled[i])[::-1][min(k or len(row), len(row)) - 1]
        q = np.where(kept, np.exp(scaled[i] - scaled[i][kept].max()), 0.0)
        q /= q.sum()
        assert np.isclose(stats.sample_prob[i], q[token], rtol=1e-9)
        assert np.isclose(stats.entropy[i], -np.sum(q[q > 0] * np.log(q[q > 0])), atol=1e-9)


@given(logits_arrays)
def test_greedy_stats(logits):
    tokens, stats = sample_with_stats(logits, SamplingConfig())
    assert np.array_equal(tokens, np.argmax(logits, axis=-1))
    assert np.all(stats.rank == 0) and np.all(stats.sample_prob == 1.0) and np.all(stats.entropy == 0.0)


def test_draws_follow_the_distribution():
    """20,000 draws from a fixed distribution: frequencies within 4 standard errors."""
    probs = np.array([0.5, 0.25, 0.0, 0.125, 0.125])
    rng = np.random.default_rng(0)
    logits = np.log(np.maximum(probs, 1e-300))[None].repeat(20_000, axis=0)
    tokens = sample(logits, SamplingConfig(1.0), rng)
    freq = np.bincount(tokens, minlength=5) / len(tokens)
    assert freq[2] == 0.0
    assert np.all(np.abs(freq - probs) < 4 * np.sqrt(probs * (1 - probs) / len(tokens)) + 1e-12)


def test_softmax_and_entropy_are_stable():
    probs = softmax(np.array([[1000.0, 1000.0, -np.inf]]))
    assert np.array_equal(probs, [[0.5, 0.5, 0.0]])
    assert np.isclose(entropy(probs)[0], np.log(2))


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        (dict(temperature=-0.5), "temperature=-0.5"),
        (dict(temperature=float("nan")), "temperature=nan"),
        (dict(top_k=0), "top_k=0"),
        (dict(top_k=2.5), "top_k=2.5"),
        (dict(top_p=0.0), "top_p=0.0"),
        (dict(top_p=1.5), "top_p=1.5"),
        (dict(top_p=-0.1), "top_p=-0.1"),
    ],
)
def test_invalid_settings_raise(kwargs, bad):
    with pytest.raises(ValueError, match=bad.replace(".", r"\.")):
        SamplingConfig(**kwargs)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="needs a numpy random Generator"):
        sample(np.zeros((1, 3)), SamplingConfig(1.0))
    with pytest.raises(ValueError, match="NaN"):
        sample(np.array([[0.0, np.nan]]), SamplingConfig())
    with pytest.raises(ValueError, match="shape"):
        sample(np.zeros(3), SamplingConfig())
    with pytest.raises(ValueError, match="2 random generators for 1 rows"):
        sample(np.zeros((1, 3)), SamplingConfig(1.0), [np.random.default_rng(0)] * 2)
