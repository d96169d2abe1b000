"""The learning-rate schedule: warmup, then cosine / linear / constant decay to min_lr."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.model.config import TrainConfig
from core.train.schedule import learning_rate


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_warmup_rises_linearly_to_peak(schedule):
    tc = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, steps=100, schedule=schedule)
    rates = [learning_rate(s, tc) for s in range(10)]
    assert rates == pytest.approx([1e-3 * (s + 1) / 10 for s in range(10)])
    assert learning_rate(10, tc) == pytest.approx(1e-3)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_decay_ends_at_min_lr(schedule):
    tc = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, steps=100, schedule=schedule)
    assert learning_rate(100, tc) == pytest.approx(1e-4)
    assert learning_rate(10_000, tc) == pytest.approx(1e-4)  # past the end it stays at the floor


def test_cosine_midpoint_and_linear_midpoint():
    cos = TrainConfig(lr=1.0, min_lr=0.0, warmup_steps=0, steps=100, schedule="cosine")
    lin = cos.replace(schedule="linear")
    assert learning_rate(50, cos) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert learning_rate(25, lin) == pytest.approx(0.75)


@given(st.integers(0, 5000), st.integers(0, 300), st.integers(1, 3000), st.sampled_from(["cosine", "linear"]))
def test_rate_stays_within_bounds_and_never_rises_after_warmup(step, warmup, steps, schedule):
    tc = TrainConfig(lr=3e-4, min_lr=3e-5, warmup_steps=warmup, steps=steps, schedule=schedule)
    rate = learning_rate(step, tc)
    assert 0 < rate <= tc.lr * (1 + 1e-12)
    if step >= warmup:
        assert rate >= tc.min_lr * (1 - 1e-12)
        assert learning_rate(step + 1, tc) <= rate + 1e-15
