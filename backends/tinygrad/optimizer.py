"""AdamW as the tinygrad backend runs it: tinygrad's own, in two parameter groups, with its state
ready from the first step and readable and writable as numpy arrays under torch's names.

The groups are as `backends/torch/backend.py` makes them: weight decay on matrices only (core's
`decays`), one learning-rate Tensor shared by both, written in place before each step. The state
crosses to numpy as `exp_avg.<name>` / `exp_avg_sq.<name>` (torch's names), so a checkpoint resumes
in either backend; tinygrad keeps beta**step rather than the step count, so loading recomputes it
with tinygrad's own float32 rounding.
"""

from __future__ import annotations

import numpy as np
from tinygrad import Tensor
from tinygrad.nn.optim import AdamW, OptimizerGroup

from core.model.config import TrainConfig
from core.model.params import decays


def float32_power(beta: float, step: int) -> np.float32:
    """beta**step as tinygrad's AdamW reaches it, one float32 multiplication per step. Exact resume
    needs the same rounding: beta**step computed once in float64 differs in the last bits."""
    value, beta32 = np.float32(1.0), np.float32(beta)
    for _ in range(step):
        value = np.float32(value * beta32)
    return value


def make_adamw(named: dict[str, Tensor], train: TrainConfig, lr: Tensor) -> OptimizerGroup:
    """AdamW over `named` (what trains, by spec name): weight decay on matrices only, learning rate `lr`."""
    decay = [t for n, t in named.items() if decays(n, t.shape)]
    no_decay = [t for n, t in named.items() if not decays(n, t.shape)]
    betas = dict(b1=train.beta1, b2=train.beta2, eps=train.eps)
    groups = [
        AdamW(params, train.lr, weight_decay=wd, **betas)
        for params, wd in ((decay, train.weight_decay), (no_decay, 0.0))
        if params  # (a LoRA model may train no vector at all)
    ]
    for group in groups:
        group.lr = lr
        # Realized now, the state is buffers from the first step on (tinygrad makes it lazy zeros and
        # ones), so the first step's graph is the one every later step runs: tinygrad's schedule cache
        # then serves the second call, which TinyJit captures, instead of scheduling it again (scratch,
        # baby GPT: that call 7.2-10.0 -> 1.9 s).
        group.m, group.v = ([t.contiguous().realize() for t in state] for state in (group.m, group.v))
        group.b1_t, group.b2_t = (t.contiguous().realize() for t in (group.b1_t, group.b2_t))
    return OptimizerGroup(*groups)


def moments(optimizer: OptimizerGroup, named: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """The first and second moments of each parameter, as numpy arrays under torch's state names."""
    state: dict[str, np.ndarray] = {}
    by_tensor = {id(t): n for n, t in named.items()}
    for opt in optimizer.optimizers:
        for t, m, v in zip(opt.params, opt.m, opt.v):
            state[f"exp_avg.{by_tensor[id(t)]}"] = m.numpy().copy()
            state[f"exp_avg_sq.{by_tensor[id(t)]}"] = v.numpy().copy()
    return state


def load_moments(optimizer: OptimizerGroup, named: dict[str, Tensor], state: dict[str, np.ndarray], step: int,
                 device: str | tuple) -> None:
    """Write `moments`' arrays back, and beta**step for `step` steps taken."""
    by_tensor = {id(t): n for n, t in named.items()}
    for opt in optimizer.optimizers:
        opt.b1_t.assign(Tensor(np.array([float32_power(opt.b1, step)]), device=device))
        opt.b2_t.assign(Tensor(np.array([float32_power(opt.b2, step)]), device=device))
        for t, m, v in zip(opt.params, opt.m, opt.v):
            m.assign(Tensor(np.asarray(state[f"exp_avg.{by_tensor[id(t)]}"], np.float32), device=device))
            v.assign(Tensor(np.asarray(state[f"exp_avg_sq.{by_tensor[id(t)]}"], np.float32), device=device))
        Tensor.realize(opt.b1_t, opt.b2_t, *opt.m, *opt.v)
