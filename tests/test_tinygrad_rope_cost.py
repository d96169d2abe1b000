"""RoPE must cost a training step about what learned positions cost, counted in the FLOPs of its kernels
(a count, not a timing, so the machine's load cannot move it). Computed inside the step, the rotations'
sines and cosines were fused into the attention kernels and recomputed for every element there:
backends/tinygrad/rope.py `rotation_table` says what that cost."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tinygrad")

from backends import get_backend  # noqa: E402
from backends.tinygrad.kernel_timer import kernel_timer  # noqa: E402
from benchmarks.profile_tinygrad import kernels_of  # noqa: E402
from core.model.config import GPTConfig, TrainConfig  # noqa: E402
from core.model.params import init_params  # noqa: E402


def step_flops(position: str) -> int:
    """FLOPs of the kernels of one jitted training step of a small GPT with these positions."""
    config = GPTConfig(vocab_size=65, block_size=32, n_layer=1, n_head=2, n_embd=32, position=position)
    model = get_backend("tinygrad").build(config, init_params(config, seed=0), TrainConfig(batch_size=4))
    data = np.random.default_rng(0).integers(0, config.vocab_size, (4, config.block_size + 1))
    for _ in range(3):  # call 0 compiles, call 1 captures the JIT, call 2 replays
        model.train_step(data[:, :-1], data[:, 1:], 1e-4)
    with kernel_timer() as calls:
        model.train_step(data[:, :-1], data[:, 1:], 1e-4)
    return sum(k.flops for k in kernels_of(calls))


def test_rope_costs_a_training_step_about_what_learned_positions_cost():
    learned, rope = step_flops("learned"), step_flops("rope")
    # RoPE adds a few multiplies per query and key element; recomputed sines and cosines add many times the step.
    assert rope < 1.25 * learned, f"RoPE step {rope:,} FLOPs against {learned:,} with learned positions"
