"""A training step's two schedules compiled as one batch, the first's kernels generated while the
second is scheduled.

The tinygrad backend realizes a training step in two parts: the loss and gradients, then the
optimizer's update, which reads them (backend.py says why apart). Realized one after the other, a
cold first step did everything in turn: schedule the first part (the main process busy, the compile
workers idle), compile its kernels (the workers busy, the main process waiting), run them, then the
same again for the optimizer's kernels, with clang runs of their own.

`realize_in_two` schedules the first part and hands its kernels' code generation to the compile
workers (one_clang.py's `Batch`) eight at a time as their options are chosen, so the workers start on
the first while the main process chooses the rest's, then builds and schedules the second part, whose
kernels join the same batch and the same clang runs. Then both parts run, in order. The kernels, and
what they compute, are the ones the two realizes give: only when and where they are compiled changes
(tests/test_tinygrad_compile_ahead.py: the same bits either way). Where nothing is compiled ahead
(one_clang.py off, another renderer, a warm cache), each part's kernels are compiled when it runs, as
before. `GPT_TINYGRAD_COMPILE_AHEAD=0` turns it off: the two parts realized in turn.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from tinygrad import Tensor
from tinygrad.codegen import to_program_cache, to_program_key
from tinygrad.engine.realize import run_linear
from tinygrad.helpers import disable_gc
from tinygrad.uop.ops import UOp

from backends.tinygrad import one_clang, program_cache, tune

ENABLED = os.environ.get("GPT_TINYGRAD_COMPILE_AHEAD", "1") != "0"
CHUNK = 8  # kernels handed to the workers at a time
compiled_ahead = 0  # kernels this process compiled in a batch of two schedules (for tests and benchmarks)


def _schedule(tensors: list[Tensor]) -> tuple[UOp, dict[str, int]] | None:
    """tinygrad's schedule of what `Tensor.realize` would realize of `tensors` (None: nothing to)."""
    todo = [t for t in tensors if not t.uop.is_virtual and not t.uop.has_buffer_identity()]
    return Tensor.linear_with_vars(*todo) if todo else None


def _compile(batch: one_clang.Batch, linear: UOp, started: dict) -> None:
    """Start compiling the kernels of `linear` not yet compiled, read from disk or started before, a few at
    a time as their options are chosen (tune.py): the workers start on the first while the rest are chosen."""
    chunk: dict[tuple, tuple[UOp, object]] = {}
    for _, ast, renderer in tune.kernels(linear):
        ast = tune.optioned(ast, renderer)
        if (key := to_program_key(ast, renderer)) not in to_program_cache and key not in started:
            chunk[key] = (ast, renderer)
        if len(chunk) == CHUNK:
            _start(batch, chunk, started)
            chunk = {}
    _start(batch, chunk, started)
    tune.with_options(linear)  # the linear to run, with the options just chosen


def _start(batch: one_clang.Batch, chunk: dict, started: dict) -> None:
    todo = program_cache.load(chunk)  # those an earlier run compiled are read from disk
    batch.add(todo)
    started.update(todo)


@disable_gc()  # as Tensor.realize: no collection while buffers are being planned
def realize_in_two(first: list[Tensor], then: Callable[[], list[Tensor]]) -> None:
    """Realize `first`, then the tensors `then()` builds (which may read `first`)."""
    if not ENABLED:
        Tensor.realize(*first)
        Tensor.realize(*then())
        return
    batch, started = one_clang.Batch(), {}
    scheduled = [_schedule(first)]
    if scheduled[0] is not None:
        _compile(batch, scheduled[0][0], started)  # the workers generate code from here on
    scheduled.append(_schedule(then()))
    if scheduled[1] is not None:
        _compile(batch, scheduled[1][0], started)
    global compiled_ahead
    compiled_ahead += len(batch.todo)
    batch.finish()
    program_cache.save(started)
    for linear, var_vals in (s for s in scheduled if s is not None):
        run_linear(linear, var_vals)
