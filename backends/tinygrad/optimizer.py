"""AdamW as the tinygrad backend runs it: every parameter updated by four kernels in all, in place.

The arithmetic is tinygrad's own AdamW (`tinygrad.nn.optim.AdamW`, to the bit:
tests/test_tinygrad_optimizer.py) and torch's: decoupled weight decay, on matrices only (core's `decays`),
bias correction by 1 - beta**step, eps added to the corrected root. What differs is how the state is
held. tinygrad's AdamW takes four kernels per parameter (two moments, the update into a temporary
buffer, a copy back), each compiled again for each parameter shape: a fifth of a cold first step's
kernels. Here:

- on one device the parameters that decay, and those that do not, each live in one flat buffer, and
  so do their gradients: the model's parameters are views of that memory (`buffers.views_of`), the
  backward pass stores each gradient straight into its place, and one kernel per buffer updates all
  of them. On several devices each parameter is its own part, as tinygrad's AdamW has it;
- a part's two moments share one buffer, (2, n): one kernel updates both in place;
- the learning rate and beta1**step, beta2**step share one (3,) buffer written from the host before
  each step, so the update reads three buffers (the values, the moments, the scalars), which tinygrad
  writes in place; from four up it keeps the new values in a temporary buffer and copies them over.

The state crosses to numpy as `exp_avg.<name>` / `exp_avg_sq.<name>` (torch's names), so a checkpoint
resumes in either backend. beta**step is kept as tinygrad's AdamW keeps it, one float32
multiplication per step, so resuming after `step` steps recomputes it with the same rounding.
"""

from __future__ import annotations

import numpy as np
from tinygrad import Tensor

from backends.tinygrad.buffers import aligned_starts, read, views_of, write
from core.model.config import TrainConfig
from core.model.params import decays


def float32_power(beta: float, step: int) -> np.float32:
    """beta**step reached one float32 multiplication at a time. Exact resume needs this rounding:
    beta**step computed once in float64 differs in the last bits."""
    value, beta32 = np.float32(1.0), np.float32(beta)
    for _ in range(step):
        value = np.float32(value * beta32)
    return value


class Part:
    """Parameters updated together, with one weight decay: their values, gradients and moments, one
    buffer each. `params` and `grads` give each parameter's own Tensor (views of the buffers when the
    part holds several)."""

    def __init__(self, named: dict[str, Tensor], weight_decay: float) -> None:
        self.weight_decay, self.shapes = weight_decay, {n: t.shape for n, t in named.items()}
        first = next(iter(named.values()))
        if len(named) == 1:
            self.values = first
            self.grad = Tensor.zeros_like(first).contiguous().realize()
            self.params, self.grads = dict(named), {n: self.grad for n in named}
        else:
            shapes = list(self.shapes.values())
            starts, size = aligned_starts(shapes)
            flat = np.zeros(size, np.float32)  # zeros between parameters stay zero: their gradient is zero
            for start, t in zip(starts, named.values()):
                flat[start:start + t.numel()] = read(t).reshape(-1)
            self.values = Tensor(flat, device=first.device).contiguous().realize()
            self.grad = Tensor.zeros(size, device=first.device).contiguous().realize()
            self.params = dict(zip(named, views_of(self.values, shapes)))
            self.grads = dict(zip(named, views_of(self.grad, shapes)))
        # m at [0], v at [1]. Realized now, like every buffer here, so the first step's graph is the one every
        # later step runs: tinygrad's schedule cache then serves the second call, which the JIT captures,
        # instead of scheduling it again (scratch, baby GPT: that call 7.2-10.0 -> 1.9 s).
        self.moments = Tensor.zeros(2, *self.values.shape, device=first.device).contiguous().realize()

    def starts(self) -> list[int]:
        """Where each parameter starts in the part's buffers."""
        return aligned_starts(list(self.shapes.values()))[0]

    def moments_of(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each parameter's (m, v) as numpy arrays."""
        both = read(self.moments).reshape(2, -1)
        return {
            name: tuple(both[i, start:start + int(np.prod(shape))].reshape(shape) for i in (0, 1))
            for (name, shape), start in zip(self.shapes.items(), self.starts())
        }


class AdamW:
    """AdamW over `named` (what trains, by spec name): weight decay on matrices only.

    The model must hold `params` in place of the Tensors it passed in (on one device they are views of
    the optimizer's buffers) and store each gradient into `grads[name]`, realized before the update
    (which reads the buffers behind them). Before each step, `prepare(lr)` writes the step's learning rate
    and bias corrections; `schedule_step(scale)` returns the updated moments and parameters to realize."""

    def __init__(self, named: dict[str, Tensor], train: TrainConfig) -> None:
        self.train = train
        self.step = 0  # steps taken, which fixes beta**step
        self.powers = (np.float32(1.0), np.float32(1.0))  # beta1**step, beta2**step in float32
        device = next(iter(named.values())).device
        self.scalars = Tensor.zeros(3, device=device).contiguous().realize()  # [lr, beta1**step, beta2**step]
        decayed = {n: t for n, t in named.items() if decays(n, t.shape)}
        rest = {n: t for n, t in named.items() if n not in decayed}
        groups = [(decayed, train.weight_decay), (rest, 0.0)]
        if isinstance(device, tuple):  # several devices: a part per parameter (views of a buffer are one device's)
            groups = [({n: t}, wd) for group, wd in groups for n, t in group.items()]
        self.parts = [Part(group, wd) for group, wd in groups if group]  # (a LoRA model may train no vector)
        self.params = {n: p for part in self.parts for n, p in part.params.items()}
        self.grads = {n: g for part in self.parts for n, g in part.grads.items()}

    def prepare(self, lr: float) -> None:
        """Write the coming step's learning rate and beta**(step + 1) into the scalars buffer."""
        b1, b2 = (np.float32(p * np.float32(b)) for p, b in zip(self.powers, (self.train.beta1, self.train.beta2)))
        self.powers = (b1, b2)
        self.step += 1
        write(self.scalars, np.array([lr, b1, b2], dtype=np.float32))

    def grad_buffers(self) -> list[Tensor]:
        """The buffers that hold every gradient (what a global norm sums over)."""
        return [part.grad for part in self.parts]

    def schedule_step(self, scale: Tensor | None = None) -> list[Tensor]:
        """The moments and parameters after this step, the gradients times `scale` (a clipping factor) if
        given, as lazy assignments: two kernels a part."""
        b1, b2, eps = self.train.beta1, self.train.beta2, self.train.eps
        lr, b1_t, b2_t = self.scalars[0:1], self.scalars[1:2], self.scalars[2:3]
        updated = []
        for part in self.parts:
            g, mv, p = part.grad if scale is None else part.grad * scale, part.moments, part.values
            # (n), (n) -> (2, n), one kernel: the same float expressions as tinygrad's AdamW.
            mv.assign(Tensor.stack(b1 * mv[0] + (1.0 - b1) * g, b2 * mv[1] + (1.0 - b2) * (g * g)))
            m_hat, v_hat = mv[0] / (1.0 - b1_t), mv[1] / (1.0 - b2_t)
            p.assign(p.detach() - lr * (m_hat / (v_hat.sqrt() + eps) + part.weight_decay * p.detach()))
            updated += [mv, p]
        return updated

    def state(self) -> dict[str, np.ndarray]:
        """The first and second moments of each parameter, as numpy arrays under torch's state names."""
        state: dict[str, np.ndarray] = {}
        for part in self.parts:
            for name, (m, v) in part.moments_of().items():
                state[f"exp_avg.{name}"], state[f"exp_avg_sq.{name}"] = m.copy(), v.copy()
        return state

    def load_state(self, state: dict[str, np.ndarray], step: int) -> None:
        """Write `state()`'s arrays back, and beta**step for `step` steps taken."""
        self.step = step
        self.powers = (float32_power(self.train.beta1, step), float32_power(self.train.beta2, step))
        for part in self.parts:
            both = np.zeros((2, part.moments.numel() // 2), np.float32)
            for (name, shape), start in zip(part.shapes.items(), part.starts()):
                for i, kind in enumerate(("exp_avg", "exp_avg_sq")):
                    both[i, start:start + int(np.prod(shape))] = np.asarray(state[f"{kind}.{name}"]).reshape(-1)
            part.moments.assign(Tensor(both.reshape(part.moments.shape), device=part.moments.device))
        Tensor.realize(*[part.moments for part in self.parts])
