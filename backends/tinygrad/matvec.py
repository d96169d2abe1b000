"""Our matrix-vector kernels for decode steps: tinygrad's own codegen, with options chosen for the shape.

A decode step multiplies one token's vector (or a few, at batch 8) by every weight matrix. tinygrad's
CPU heuristics treat that like any reduction: for a linear layer's (in, out) weight they unroll the
sum over `in` but compute one output at a time, so each step of the sum jumps a whole weight row,
and the kernel ran at 1-2 GFLOP/s here (the profile: 86% of a reference-size decode step).
tinygrad's matvec heuristic (MV_*) is for GPUs only (it needs local memory).

`opts_for` recognizes such a kernel (one sum of a product of two inputs, at most 8 output rows, the
weight read without the batch index) and gives it options that suit the weight's layout:

- weight (in, out), outputs contiguous in a row: 16 outputs at once (UPCAST), so every step of the
  sum loads 16 consecutive floats of one weight row; at batch 2..8 every row at once as well, so
  each weight load serves them all; the sum unrolled by 4 where at most 32 sums are kept (batch 1
  and 2). See `benchmarks/matvec.py` for the gain per layer and batch. At batch 8, all rows at once
  instead of rows in pairs took 0.45-0.65x the time (scratch, the four layers interleaved).
- weight (out, in), the output head's (vocab, n_embd) read by row: 8 dot products at once, each
  unrolled by 8 (batch 1 only: at batch 8 no option tried beat tinygrad's own, timed interleaved).

The options go where tuned ones would (tune.py's compile hook); a kernel that `tune` has searched
keeps its tuned options. Every option is checked on the kernel first (tinygrad raises
KernelOptError for one that does not fit), so a kernel that does not take them compiles as before.
The sums are the same products added in another order: results agree with the default kernels to
float32 round-off. `GPT_TINYGRAD_MATVEC=0` turns it off.
"""

from __future__ import annotations

import os

from tinygrad.codegen.opt import KernelOptError, Opt, OptOps
from tinygrad.codegen.opt.postrange import Scheduler
from tinygrad.codegen.simplify import pm_flatten_range, pm_load_collapse, pm_simplify_ranges, pm_split_ranges
from tinygrad.schedule.multi import multi_pm
from tinygrad.schedule.rangeify import pm_mops
from tinygrad.uop.ops import AxisType, Ops, UOp, graph_rewrite
from tinygrad.uop.symbolic import sym

ENABLED = os.environ.get("GPT_TINYGRAD_MATVEC", "1") != "0"
MAX_ROWS = 8  # a decode step's batch: more rows are a training or prefill matmul, left to tinygrad
chosen: set[bytes] = set()  # kernel AST keys given these options in this process
_decided: dict[bytes, tuple[Opt, ...] | None] = {}


def opts_for(ast: UOp, renderer) -> tuple[Opt, ...] | None:
    """Options for a small-batch matrix-vector kernel `ast` on a CPU renderer, or None to leave it as is."""
    if not ENABLED or renderer.target.device != "CPU":
        return None
    if ast.key not in _decided:  # every realize asks again for the kernels it compiles: decide once each
        # Cheaply on the kernel as given; where it qualifies, again on the form tinygrad applies options to.
        _decided[ast.key] = _choose(ast, renderer) and _choose(as_optimized(ast), renderer)
        if _decided[ast.key] is not None:
            chosen.add(ast.key)
    return _decided[ast.key]


def as_optimized(ast: UOp) -> UOp:
    """`ast` rewritten as tinygrad's full_rewrite_to_sink rewrites it before applying options (tinygrad
    0.14, codegen/__init__.py): splitting and simplifying ranges may renumber the axes options name."""
    sink = graph_rewrite(ast, multi_pm, name="multi_pm")
    sink = graph_rewrite(sink, pm_mops, name="early movement ops", bottom_up=True)
    sink = graph_rewrite(sink, pm_load_collapse, name="load collapse")
    sink = graph_rewrite(sink, pm_split_ranges + pm_flatten_range, ctx={}, name="split ranges")
    sink = graph_rewrite(sink, sym + pm_flatten_range, name="initial symbolic")
    return graph_rewrite(sink, pm_flatten_range + pm_simplify_ranges, ctx={}, name="simplify ranges")


def _choose(ast: UOp, renderer) -> tuple[Opt, ...] | None:
    k = Scheduler(ast, renderer)
    k.convert_loop_to_global()
    reduce, reduces = k.reduceop, k.ranges_of(AxisType.REDUCE)
    if reduce is None or reduce.arg[0] is not Ops.ADD or len(reduces) != 1 or len(k.reduceops) != 1:
        return None
    product = reduce.src[0]
    if product.op is not Ops.MUL or any(s.op is not Ops.INDEX for s in product.src):
        return None
    globals_ = k.upcastable_dims  # the output axes (WEAK on a CPU, whose kernels have no GLOBAL ones)
    if not globals_:
        return None
    shape = [int(s) if isinstance(s, int) else 0 for s in k.full_shape]
    out = max(globals_, key=lambda a: shape[a])  # the widest output axis: the weight's outputs
    out_range, sum_range = k.rngs[out], reduces[0]
    rows = [a for a in globals_ if a != out]
    n_rows = 1
    for a in rows:
        n_rows *= shape[a]
    if not 0 < n_rows <= MAX_ROWS:
        return None
    weight = [s.src[1].get_idx() for s in product.src if out_range in s.src[1].get_idx().ranges]
    if len(weight) != 1 or any(k.rngs[a] in weight[0].ranges for a in rows):
        return None  # not one weight read the same for every row: not a matrix-vector product
    terms = list(weight[0].split_uop(Ops.ADD))
    one_row_axis = len(rows) == 1 and n_rows > 1
    if out_range in terms and shape[out] % 16 == 0:  # (in, out): consecutive outputs side by side
        opts = [Opt(OptOps.UPCAST, out, 16)]
        if one_row_axis:  # every row at once, so that each weight load serves them all
            opts.append(Opt(OptOps.UPCAST, rows[0], n_rows))
        if n_rows <= 2:  # at most 32 sums in registers: room to unroll (more rows: unrolling measured no faster)
            opts.append(Opt(OptOps.UNROLL, 0, 4))
    elif sum_range in terms and n_rows == 1 and shape[out] % 8 == 0:  # (out, in): each output a dot product
        opts = [Opt(OptOps.UPCAST, out, 8), Opt(OptOps.UNROLL, 0, 8)]
    else:
        return None
    return fitting(k, opts)


def fitting(k: Scheduler, opts: list[Opt]) -> tuple[Opt, ...] | None:
    """`opts` if they all apply to the kernel `k` (applied to it, as tinygrad will), else None."""
    try:
        for opt in opts:
            k.apply_opt(opt)
    except KernelOptError:
        return None
    return tuple(opts)
