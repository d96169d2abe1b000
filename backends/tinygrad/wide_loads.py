"""Wider vector loads and stores on a CPU: tinygrad moves float32 values 4 at a time; this moves 16 or 8.

tinygrad 0.14's memory coalescing (`tinygrad/codegen/late/coalesce.py`) turns loads and stores of
consecutive addresses into vector ones, but on a CPU at most 4 float32 wide (a 128-bit register; only
half with ALLOW_HALF8 gets 8), the widths a list inside the function, out of reach of any option.
In the matmul kernel we read, clang vectorized the tile's arithmetic at the width of the stores that
end it: our 4 x 16 tiles (gemm.py) ran their multiply-adds in 128-bit registers where this CPU's
AVX2 holds 256 bits, and wider loads alone did not change that; wider stores did.
After tinygrad's pass, this one takes each run of 4-wide accesses of one buffer at consecutive
offsets (the same index expression and validity) and makes it one access of 16 (else 8) values, where
the first offset is a multiple of that width: tinygrad's own alignment rule for 4, so an aligned
vector type stays aligned (tinygrad's CPU buffers are page-aligned mmaps). Each value read or
written is the same as before, at the same address: the kernels compute exactly what they did, bit
for bit (tests/test_tinygrad_wide_loads.py).

tinygrad compiles in worker processes, so `install` also makes each new worker install the pass.
What it buys: `python -m benchmarks.levers_tinygrad` ("no wide loads"; levers-baby.md: a baby-GPT
training step 1.32x faster with it). `GPT_TINYGRAD_WIDE_LOADS=0` turns it off.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import tinygrad.codegen as codegen
import tinygrad.engine.worker as worker
from tinygrad.dtype import dtypes
from tinygrad.helpers import Context
from tinygrad.renderer.cstyle import CStyleLanguage
from tinygrad.uop.ops import Ops, UOp

ENABLED = os.environ.get("GPT_TINYGRAD_WIDE_LOADS", "1") != "0"
WIDTHS = (16, 8)  # in float32 values, widest first; each a multiple of tinygrad's 4
_coalesce = codegen.memory_coalescing  # tinygrad's own pass, which ours runs after
_start_worker = worker._init_worker  # tinygrad's set-up of a compile worker
_narrow_programs: dict = {}  # compiled kernels without the pass, kept apart (see `disabled`)


def _split(index: UOp) -> tuple[UOp | None, int]:
    """An index as (expression, constant offset): `e + 8` -> (e, 8), `8` -> (None, 8), `e` -> (e, 0)."""
    if index.op is Ops.ADD and index.src[1].op is Ops.CONST:
        return index.src[0], index.src[1].arg
    if index.op is Ops.ADD and index.src[0].op is Ops.CONST:
        return index.src[1], index.src[0].arg
    if index.op is Ops.CONST:
        return None, index.arg
    return index, 0


def _accesses(sink: UOp) -> tuple[dict, dict[UOp, list[UOp]]]:
    """The 4-wide float32 loads and stores of `sink`, as (op, buffer, index expression, valid) -> offset -> UOp,
    and the users of every load."""
    runs: defaultdict[tuple, dict[int, UOp]] = defaultdict(dict)
    users: defaultdict[UOp, list[UOp]] = defaultdict(list)
    for u in sink.toposort():
        for s in u.src:
            if s.op is Ops.LOAD:
                users[s].append(u)
        plain = len(u.src) == (1 if u.op is Ops.LOAD else 2)  # no gate
        if u.op not in (Ops.LOAD, Ops.STORE) or not plain or u.src[0].op is not Ops.SHRINK:
            continue
        buf, offset, length = u.src[0].src
        if buf.dtype != dtypes.float or length.op is not Ops.CONST or length.arg != 4:
            continue
        expression, constant = _split(offset.get_idx())
        if isinstance(constant, int):
            runs[(u.op, buf, expression, offset.get_valid())][constant] = u
    return runs, users


def widen(sink: UOp) -> UOp:
    """`sink` with runs of 4-wide float32 loads and stores merged into 16- or 8-wide ones (see the module docstring)."""
    runs, users = _accesses(sink)

    def mergeable(u: UOp) -> bool:  # a store, or a load whose every use takes one element at a constant position
        return u.op is Ops.STORE or all(
            x.op is Ops.INDEX and len(x.src) == 2 and x.src[1].op is Ops.CONST for x in users[u]
        )

    replacements: dict[UOp, UOp] = {}
    for (op, buf, expression, _), accesses in runs.items():
        merged: set[int] = set()
        for start in sorted(accesses):
            if start in merged:
                continue
            first = expression + start if expression is not None else UOp.const(start)
            for width in WIDTHS:
                run = [accesses.get(start + 4 * k) for k in range(width // 4)]
                if not all(r is not None and mergeable(r) for r in run) or first.divides(width) is None:
                    continue
                # The first access's offset (with its validity); only the length grows.
                wide = UOp(Ops.SHRINK, src=(buf, run[0].src[0].src[1], UOp.const(width)))
                if op is Ops.LOAD:
                    load = wide.load()
                    for k, r in enumerate(run):
                        for x in users[r]:
                            replacements[x] = load.index(4 * k + x.src[1].arg)
                else:  # one store of the values the 4-wide stores wrote, in order; it replaces each of them
                    store = wide.store(UOp.stack(*(r.src[1].index(i) for r in run for i in range(4))))
                    replacements.update((r, store) for r in run)
                merged.update(start + 4 * k for k in range(width // 4))
                break
    return sink.substitute(replacements, name="wide loads") if replacements else sink


def memory_coalescing(sink: UOp, renderer) -> UOp:
    """tinygrad's memory coalescing, then, for its C renderer on a CPU, `widen`."""
    sink = _coalesce(sink, renderer)
    if ENABLED and isinstance(renderer, CStyleLanguage) and renderer.target.device == "CPU":
        sink = widen(sink)
    return sink


def _init_worker() -> None:
    """A compile worker's start: tinygrad's own set-up, then the pass (a worker is a fresh process)."""
    _start_worker()
    install()


def install() -> None:
    """Make tinygrad's code generation use `memory_coalescing` above, here and in compile workers started
    from now on (idempotent)."""
    codegen.memory_coalescing = memory_coalescing
    worker._init_worker = _init_worker  # the pool pickles it by name: each worker imports this module


@contextmanager
def disabled() -> Iterator[None]:
    """Compile without the pass while inside (for side-by-side measurements and tests): in this process
    (the workers read GPT_TINYGRAD_WIDE_LOADS when they start), with a cache of compiled kernels of its own,
    since tinygrad's is keyed by the kernel alone and would hand back the wide version."""
    global ENABLED
    cache, saved, enabled = codegen.to_program_cache, dict(codegen.to_program_cache), ENABLED
    cache.clear()
    cache.update(_narrow_programs)
    ENABLED = False
    try:
        with Context(PARALLEL=0):
            yield
    finally:
        ENABLED = enabled
        _narrow_programs.update(cache)
        cache.clear()
        cache.update(saved)
