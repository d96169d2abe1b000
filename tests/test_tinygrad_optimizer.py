"""The tinygrad backend's AdamW (backends/tinygrad/optimizer.py) against tinygrad's own: the same
parameters and moments, bit for bit, over steps with changing learning rates and gradients, with and
without weight decay; four kernels for all the parameters; and a resume from its state that continues
exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("tinygrad")

from tinygrad import Context, Tensor  # noqa: E402
from tinygrad.nn.optim import AdamW as TinygradAdamW  # noqa: E402
from tinygrad.nn.optim import OptimizerGroup  # noqa: E402

from backends.tinygrad.optimizer import AdamW  # noqa: E402
from core.model.config import TrainConfig  # noqa: E402
from core.model.params import decays  # noqa: E402

SHAPES = {"h.0.mlp.c_fc.weight": (6, 4), "h.0.mlp.c_fc.bias": (4,), "ln_f.weight": (6,)}  # decayed: the matrix
TRAIN = TrainConfig(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)


def fresh(values: dict[str, np.ndarray]) -> dict[str, Tensor]:
    return {n: Tensor(v).contiguous().realize() for n, v in values.items()}


def tinygrad_adamw(named: dict[str, Tensor]) -> tuple[OptimizerGroup, Tensor]:
    """tinygrad's AdamW in two groups (decay on matrices only), its learning rate a Tensor set per step."""
    lr = Tensor([TRAIN.lr]).contiguous().realize()
    groups = []
    for wd, params in ((TRAIN.weight_decay, [t for n, t in named.items() if decays(n, t.shape)]),
                       (0.0, [t for n, t in named.items() if not decays(n, t.shape)])):
        group = TinygradAdamW(params, TRAIN.lr, b1=TRAIN.beta1, b2=TRAIN.beta2, eps=TRAIN.eps, weight_decay=wd)
        group.lr = lr
        groups.append(group)
    return OptimizerGroup(*groups), lr


def step(optimizer, named: dict[str, Tensor], grads: dict[str, np.ndarray]) -> None:
    """One step of tinygrad's AdamW (gradients in `.grad`) or ours (gradients stored where it reads them)."""
    if isinstance(optimizer, AdamW):
        Tensor.realize(*[optimizer.grads[n].assign(Tensor(g)) for n, g in grads.items()])
    else:
        for name, t in named.items():
            t.grad = Tensor(grads[name])
    with Context(TRAINING=1):
        Tensor.realize(*optimizer.schedule_step())


def ours(start: dict[str, np.ndarray]) -> tuple[AdamW, dict[str, Tensor]]:
    """Our AdamW and the parameters it holds (on one device, views of its flat buffers)."""
    optimizer = AdamW(fresh(start), TRAIN)
    return optimizer, optimizer.params


@given(seed=st.integers(0, 2**16), steps=st.integers(1, 4))
def test_the_same_bits_as_tinygrads_adamw(seed, steps):
    rng = np.random.default_rng(seed)
    start = {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
    (mine, mine_named), theirs_named = ours(start), fresh(start)
    theirs, their_lr = tinygrad_adamw(theirs_named)
    for _ in range(steps):
        lr = float(rng.uniform(1e-4, 1e-2))
        grads = {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
        mine.prepare(lr)
        step(mine, mine_named, grads)
        their_lr.assign(Tensor([lr])).realize()
        step(theirs, theirs_named, grads)
    for name in SHAPES:
        assert np.array_equal(mine_named[name].numpy(), theirs_named[name].numpy()), name
    theirs_state = {t: (m, v) for group in theirs.optimizers for t, m, v in zip(group.params, group.m, group.v)}
    for name, (m, v) in ((n, theirs_state[theirs_named[n]]) for n in SHAPES):
        assert np.array_equal(mine.state()[f"exp_avg.{name}"], m.numpy()), name
        assert np.array_equal(mine.state()[f"exp_avg_sq.{name}"], v.numpy()), name
    assert mine.step == steps


def test_four_kernels_in_all():
    """On one device: one kernel updates the moments of the parameters that decay, in place, one those
    parameters; two more the same for the rest. No temporary, no copy, whatever the number of parameters."""
    from tinygrad.helpers import GlobalCounters

    mine, _ = ours({n: np.ones(s, np.float32) for n, s in SHAPES.items()})
    mine.prepare(1e-3)
    Tensor.realize(*[g.assign(Tensor.ones(*g.shape)) for g in mine.grads.values()])
    GlobalCounters.reset()
    with Context(TRAINING=1):
        Tensor.realize(*mine.schedule_step())
    assert GlobalCounters.kernel_count == 4


def test_resume_from_the_state_continues_exactly():
    rng = np.random.default_rng(0)
    start = {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
    grads = [{n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()} for _ in range(5)]
    straight, straight_named = ours(start)
    for g in grads:
        straight.prepare(1e-3)
        step(straight, straight_named, g)
    first, first_named = ours(start)
    for g in grads[:3]:
        first.prepare(1e-3)
        step(first, first_named, g)
    resumed, resumed_named = ours({n: t.numpy() for n, t in first_named.items()})
    resumed.load_state(first.state(), step=3)
    for g in grads[3:]:
        resumed.prepare(1e-3)
        step(resumed, resumed_named, g)
    for name in SHAPES:
        assert np.array_equal(resumed_named[name].numpy(), straight_named[name].numpy()), name
