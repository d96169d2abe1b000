"""AdamW as the tinygrad backend runs it: two kernels per parameter, each updating its buffer in place.

The arithmetic is tinygrad's own AdamW (`tinygrad.nn.optim.AdamW`, to the bit:
tests/test_tinygrad_optimizer.py) and torch's: decoupled weight decay, on matrices only (core's `decays`),
bias correction by 1 - beta**step, eps added to the corrected root. What differs is how the state is
held, so that each parameter's step is two kernels instead of tinygrad's four:

- the two moments of a parameter share one buffer, (2, *shape): one kernel updates both in place;
- the learning rate and beta1**step, beta2**step share one (3,) buffer written from the host before
  each step, so the parameter's update reads three buffers (itself, its moments, the scalars) and
  tinygrad writes it in place. Reading four or more, as tinygrad's AdamW does (its lr, b1_t, b2_t,
  m and v), tinygrad keeps the new value in a temporary buffer and copies it over: two more kernels
  per parameter to schedule, compile and run.

The state crosses to numpy as `exp_avg.<name>` / `exp_avg_sq.<name>` (torch's names), so a checkpoint
resumes in either backend. beta**step is kept as tinygrad's AdamW keeps it, one float32
multiplication per step, so resuming after `step` steps recomputes it with the same rounding.
"""

from __future__ import annotations

import numpy as np
from tinygrad import Tensor, dtypes

from backends.tinygrad.buffers import read, write
from core.model.config import TrainConfig
from core.model.params import decays


def float32_power(beta: float, step: int) -> np.float32:
    """beta**step reached one float32 multiplication at a time. Exact resume needs this rounding:
    beta**step computed once in float64 differs in the last bits."""
    value, beta32 = np.float32(1.0), np.float32(beta)
    for _ in range(step):
        value = np.float32(value * beta32)
    return value


class AdamW:
    """AdamW over `named` (what trains, by spec name): weight decay on matrices only.

    Before each step, `prepare(lr)` writes the step's learning rate and bias corrections; in the step,
    `schedule_step()` returns the updated moments and parameters (from each parameter's `.grad`) to
    realize with the loss."""

    def __init__(self, named: dict[str, Tensor], train: TrainConfig) -> None:
        self.named, self.train = named, train
        self.step = 0  # steps taken, which fixes beta**step
        self.powers = (np.float32(1.0), np.float32(1.0))  # beta1**step, beta2**step in float32
        device = next(iter(named.values())).device
        # [lr, beta1**step, beta2**step]. Realized now, like the moments, so the first step's graph is the
        # one every later step runs: tinygrad's schedule cache then serves the second call, which the JIT
        # captures, instead of scheduling it again (scratch, baby GPT: that call 7.2-10.0 -> 1.9 s).
        self.scalars = Tensor.zeros(3, device=device).contiguous().realize()
        # (2, *shape): the first moment (m) at [0], the second (v) at [1].
        self.moments = {n: Tensor.zeros(2, *t.shape, device=device).contiguous().realize() for n, t in named.items()}

    def prepare(self, lr: float) -> None:
        """Write the coming step's learning rate and beta**(step + 1) into the scalars buffer."""
        b1, b2 = (np.float32(p * np.float32(b)) for p, b in zip(self.powers, (self.train.beta1, self.train.beta2)))
        self.powers = (b1, b2)
        self.step += 1
        write(self.scalars, np.array([lr, b1, b2], dtype=np.float32))

    def schedule_step(self) -> list[Tensor]:
        """The moments and parameters after this step, as lazy assignments (one kernel each)."""
        b1, b2, eps = self.train.beta1, self.train.beta2, self.train.eps
        lr, b1_t, b2_t = self.scalars[0:1], self.scalars[1:2], self.scalars[2:3]
        updated = []
        for name, t in self.named.items():
            g, mv = t.grad, self.moments[name]
            # (shape), (shape) -> (2, *shape), one kernel: the same float expressions as tinygrad's AdamW.
            mv.assign(Tensor.stack(b1 * mv[0] + (1.0 - b1) * g, b2 * mv[1] + (1.0 - b2) * (g * g)))
            m_hat, v_hat = mv[0] / (1.0 - b1_t), mv[1] / (1.0 - b2_t)
            wd = self.train.weight_decay if decays(name, t.shape) else 0.0
            t.assign(t.detach() - lr * (m_hat / (v_hat.sqrt() + eps) + wd * t.detach()))
            updated += [mv, t]
        return updated

    def state(self) -> dict[str, np.ndarray]:
        """The first and second moments of each parameter, as numpy arrays under torch's state names."""
        state: dict[str, np.ndarray] = {}
        for name, mv in self.moments.items():
            m, v = read(mv)
            state[f"exp_avg.{name}"], state[f"exp_avg_sq.{name}"] = m.copy(), v.copy()
        return state

    def load_state(self, state: dict[str, np.ndarray], step: int) -> None:
        """Write `state()`'s arrays back, and beta**step for `step` steps taken."""
        self.step = step
        self.powers = (float32_power(self.train.beta1, step), float32_power(self.train.beta2, step))
        for name, mv in self.moments.items():
            pair = np.stack([state[f"exp_avg.{name}"], state[f"exp_avg_sq.{name}"]]).astype(np.float32)
            mv.assign(Tensor(pair.reshape(mv.shape), device=mv.device, dtype=dtypes.float32))
        Tensor.realize(*self.moments.values())
