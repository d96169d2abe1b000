"""Learning-rate schedules: linear warmup, then cosine, linear or constant decay to `min_lr`.

A schedule is a pure function of the step, so a resumed run continues on exactly the same curve.
The decay spans `decay_steps` (0: the run's `steps`); after it the rate holds at `min_lr`. A run
extended with `--extend-steps` keeps the decay it was planned with, so its extra steps run at `min_lr`.
"""

from __future__ import annotations

import math

from core.model.config import TrainConfig


def learning_rate(step: int, train: TrainConfig) -> float:
    """The learning rate for optimizer step `step` (0-based)."""
    if step < train.warmup_steps:  # warm up from lr/warmup to lr: a cold Adam takes large steps
        return train.lr * (step + 1) / train.warmup_steps
    if train.schedule == "constant":
        return train.lr
    decay_steps = max(1, (train.decay_steps or train.steps) - train.warmup_steps)
    progress = min(1.0, (step - train.warmup_steps) / decay_steps)  # 0 -> 1 over the decay
    if train.schedule == "cosine":
        weight = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0 along half a cosine
    else:
        weight = 1.0 - progress
    return train.min_lr + weight * (train.lr - train.min_lr)
