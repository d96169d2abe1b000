"""tinygrad's fast attention (backends/tinygrad/attention.py `attention`) against numpy (outputs) and
tinygrad's built-in attention (gradients), with the causal query split. The split starts at
SPLIT_FROM positions, longer than the models the other tests draw, so here it starts at 2."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

tg_attention = pytest.importorskip("backends.tinygrad.attention")
from tinygrad import Context, Tensor  # noqa: E402

from backends.tinygrad import fusion  # noqa: E402
from core.model.softmax import softmax  # noqa: E402


def numpy_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])
    if causal:
        scores = np.where(np.triu(np.ones(scores.shape[-2:], dtype=bool), 1), -np.inf, scores)
    return softmax(scores) @ v


# Few lengths, since every new shape compiles (about 10 s each here): odd and even splits, and one query.
@settings(max_examples=5)
@given(T=st.sampled_from([1, 6, 7]), causal=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_attention_matches_numpy_and_builtin_gradients(T, causal, seed):
    saved = fusion.FAST, tg_attention.SPLIT_FROM
    tg_attention.SPLIT_FROM = 2
    try:
        check_attention(T, causal, seed)
    finally:
        fusion.FAST, tg_attention.SPLIT_FROM = saved


def check_attention(T: int, causal: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    q, k, v, g = (rng.standard_normal((2, 2, T, 4)).astype(np.float32) for _ in range(4))
    grads = {}
    # (fast, training): in training the fast path also takes the gradient of its weights from a transposed
    # copy of the values; outside it the gradients must be right as well (the Model's `gradients`).
    for fast, training in ((True, True), (True, False), (False, False)):
        fusion.FAST = fast
        with Context(TRAINING=int(training)):
            tq, tk, tv = (Tensor(a) for a in (q, k, v))
            out = tg_attention.attention(tq, tk, tv, causal)
            gradients = (out * Tensor(g)).sum().gradient(tq, tk, tv)
            Tensor.realize(out, *gradients)  # together: a tensor realized alone no longer passes gradients back
        if fast:
            np.testing.assert_allclose(out.numpy(), numpy_attention(q, k, v, causal), atol=1e-5)
        grads[fast, training] = [t.numpy() for t in gradients]
    for variant in ((True, True), (True, False)):
        for fast, slow in zip(grads[variant], grads[False, False], strict=True):
            np.testing.assert_allclose(fast, slow, atol=1e-5)



@pytest.mark.parametrize("causal", [False, True])
def test_attention_dropout_matches_builtin(causal):
    """Dropout on the attention probabilities, as the built-in applies it: the same seed draws the same
    mask over the same (B, nh, T, S) shape, and the kept weights are normalized by the sum of all."""
    rng = np.random.default_rng(1)
    q, k, v, g = (rng.standard_normal((2, 2, 6, 4)).astype(np.float32) for _ in range(4))
    results = {}
    saved = fusion.FAST
    try:
        for fast in (True, False):
            fusion.FAST = fast
            with Context(TRAINING=1):
                Tensor.manual_seed(3)
                tq, tk, tv = (Tensor(a) for a in (q, k, v))
                out = tg_attention.attention(tq, tk, tv, causal, dropout=0.5)
                gradients = (out * Tensor(g)).sum().gradient(tq, tk, tv)
                Tensor.realize(out, *gradients)
            results[fast] = [t.numpy() for t in (out, *gradients)]
    finally:
        fusion.FAST = saved
    for ours, builtin in zip(results[True], results[False], strict=True):
        np.testing.assert_allclose(ours, builtin, atol=1e-5)
