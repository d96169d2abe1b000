"""Time every kernel of a jitted tinygrad step on its own (as tinygrad's DEBUG=2 does, without printing).

Used by the profile (benchmarks/profile_tinygrad.py) and by `tune`, which ranks kernels by it.
"""

from __future__ import annotations

from contextlib import contextmanager

import tinygrad.engine.jit as jit
import tinygrad.engine.realize as realize

from backends.tinygrad import replay


@contextmanager
def kernel_timer():
    """Record (call, seconds, var_vals) of every kernel tinygrad's JIT runs inside the block, each waited for
    (our `Replay` of the JIT is bypassed meanwhile: the kernels are the same, launched by tinygrad)."""
    calls: list = []
    run_linear, track_stats = jit.run_linear, realize.track_stats

    def waited(*args, **kwargs):
        kwargs["wait"] = True
        return run_linear(*args, **kwargs)

    def record(ctx, call, started, seconds):
        calls.append((call, sum(s for s in seconds if s), dict(ctx.var_vals)))
        track_stats(ctx, call, started, seconds)

    jit.run_linear, realize.track_stats, replay.through_tinygrad = waited, record, True
    try:
        yield calls
    finally:
        jit.run_linear, realize.track_stats, replay.through_tinygrad = run_linear, track_stats, False
