"""core/model/softmax.py and core/model/context.py: the one softmax/entropy and the one crop rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.model.context import crop_context
from core.model.softmax import entropy, entropy_from_parts, log_softmax, softmax, softmax_parts

LOGITS = arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(2, 9)), elements=st.floats(-30, 30, width=32))


@given(LOGITS)
def test_softmax_log_softmax_and_entropy_agree(logits):
    p = softmax(logits)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(log_softmax(logits)), p, rtol=1e-10, atol=1e-300)
    direct = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=-1)  # textbook formula, p > 0 here
    np.testing.assert_allclose(entropy(p), direct, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(entropy_from_parts(*softmax_parts(logits)), entropy(p), rtol=1e-9, atol=1e-9)


def test_minus_infinity_gets_probability_zero():
    p = softmax(np.array([[0.0, -np.inf, 0.0]]))
    assert p[0, 1] == 0.0 and entropy(p)[0] == pytest.approx(np.log(2))


def test_large_logits_do_not_overflow():
    assert np.isfinite(log_softmax(np.array([1e4, 0.0]))).all()


@given(st.lists(st.integers(0, 99), max_size=30), st.integers(1, 20))
def test_crop_keeps_the_last_tokens(ids, size):
    kept, dropped = crop_context(ids, size)
    assert kept == ids[len(ids) - len(kept) :] and len(kept) == min(len(ids), size) and dropped + len(kept) == len(ids)


def test_crop_to_nothing_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        crop_context([1, 2], 0)
