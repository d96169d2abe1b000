"""Our matrix-matrix kernels for training and prefill: tinygrad's own codegen, options chosen for the layout.

A CPU matmul is fast when each step of its sum loads a few values of one input, a short contiguous
row of the other, and multiplies every pair into accumulators held in registers (an "outer product"
step): here 4 rows of the output times 16 of its columns, 64 multiply-adds for 20 loads. tinygrad's
CPU heuristics upcast 3 or 4 outputs along two axes whatever the layout; with these options instead a
baby-GPT training step is 2.56x faster (benchmarks/results/levers-baby.md, "no matmul options").

`opts_for` recognizes a matmul kernel (one sum of a product of two loads, more rows than a decode
step's matrix-vector products, which `matvec.py` handles) and tells two layouts apart by the loads'
index expressions (below MIN_FLOPS, tiles of 4 x 2 in either: cheaper to compile):

- outer product form: one output axis `n` is contiguous in one input and absent from the other, as
  in x @ W with W stored (in, out), or a weight gradient x.T @ dy summed over positions: 16 outputs
  along `n` at once (fewer where 16 does not divide it), 4 along another output axis `m`. An axis
  the other input reads only in blocks (attention's heads side by side in one n_head * head_size axis,
  read per head as h // head_size) counts as absent from it; where both inputs could give `n` (a
  weight gradient), it is the output's last axis, along which the output is stored;
- dot-product form: the summed axis is contiguous in both inputs (dy @ W.T, q @ k.T): 8 outputs
  along one axis and 4 along another.

The sum is not unrolled: unrolled by 4, the 64 accumulators and four steps' loads no longer fit the 16
vector registers of AVX2 and clang spilled them to the stack inside the loop (read in the compiled
kernel); without it, timed side by side in one process, baby-GPT training steps were faster and
reference-size ones no slower.

Two other kinds of kernel were slow for want of options: `_column_sum`, a sum down a matrix's columns
(a bias's gradient), gets 16 columns at once; `_spread_transcendental`, a softmax's exponentials or
GELU's tanh, a thread split and no upcast, so that clang vectorizes the loop (a baby GPT's exp kernel
1.0 -> 0.21 ms a layer, scratch; its evaluation forward pass 0.88x, its training step 0.92x, side by
side in one process).

Large kernels are also split over the CPU threads (threads.py runs the parts at once). Options go
where tuned ones would (tune.py's compile hook), so a kernel `tune` has searched keeps its own, and
every option is checked on the kernel first: a kernel that does not take them compiles as before.
The sums add the same products in another order, so results agree with tinygrad's own kernels to
float32 round-off. `GPT_TINYGRAD_GEMM=0` turns it off.
"""

from __future__ import annotations

import os

from tinygrad.codegen.opt import Opt, OptOps
from tinygrad.codegen.opt.postrange import Scheduler
from tinygrad.helpers import NUM_CPU_THREADS, prod
from tinygrad.uop.ops import AxisType, Ops, UOp

from backends.tinygrad import matvec
from backends.tinygrad import threads as parallel

ENABLED = os.environ.get("GPT_TINYGRAD_GEMM", "1") != "0"
# Upcast amounts, first that divides the axis: outer product form (along n, along m), dot-product form.
OUTER = ((16, 8, 4), (4, 2, 3))
DOT = ((8, 4, 2), (4, 2))
# Below MIN_FLOPS a matmul gets tiles of 4 x 2 (either form): large tiles make large kernels, slow to
# compile, and what they save on so little work does not pay that back in a short run. tinygrad's own
# options were no cheaper: for the README's default run's attention matmuls (8.4 MFLOP) they upcast 4 x 4
# and unroll the sum by 16, about 1 s of code generation a kernel; with 4 x 2 about 0.15 s, and its
# training step as fast (side by side in one process). 16 x 4 tiles for the same matmuls were no faster,
# and from 10 MFLOP (the baby GPT's attention matmuls, 12.6; the default run's linear layers) smaller
# tiles cost time: 8 x 2 up to 50 MFLOP made the default run's step 1.11x slower.
MIN_FLOPS = 10_000_000
SMALL = ((4, 2), (2,))
# Elementwise kernels of exp/log/sin from this many elements get a thread split (_spread_transcendental);
# threads.py runs the parts at once only from MIN_PARALLEL_BYTES of output.
MIN_SPREAD_ELEMENTS = parallel.MIN_PARALLEL_BYTES // 4
TRANSCENDENTAL = (Ops.EXP2, Ops.LOG2, Ops.SIN)
chosen: set[bytes] = set()  # kernel AST keys given these options in this process
_decided: dict[bytes, tuple[Opt, ...] | None] = {}


def opts_for(ast: UOp, renderer) -> tuple[Opt, ...] | None:
    """Options for a matrix-matrix product kernel `ast` on a CPU renderer, or None to leave it as is."""
    if not ENABLED or renderer.target.device != "CPU":
        return None
    if ast.key not in _decided:
        ops = {u.op for u in ast.toposort()}
        # An elementwise kernel without exponentials takes no options: known without rewriting it first (in
        # the main process, while the compile workers wait: 0.15 s of a cold first step, 137 such kernels).
        plain = Ops.REDUCE not in ops and not ops.intersection(TRANSCENDENTAL)
        _decided[ast.key] = None if plain else _choose(matvec.as_optimized(ast), renderer)
        if _decided[ast.key] is not None:
            chosen.add(ast.key)
    return _decided[ast.key]


def _first_divisor(size: int, choices: tuple[int, ...]) -> int | None:
    return next((c for c in choices if size % c == 0), None)


def _choose(ast: UOp, renderer) -> tuple[Opt, ...] | None:
    k = Scheduler(ast, renderer)
    k.convert_loop_to_global()
    reduce, reduces = k.reduceop, k.ranges_of(AxisType.REDUCE)
    if reduce is None:
        return _spread_transcendental(k, ast, renderer)
    if reduce.arg[0] is not Ops.ADD or len(k.reduceops) != 1 or not reduces:
        return None
    product = reduce.src[0]
    if product.op is not Ops.MUL:
        return _column_sum(k, reduces)
    if any(not isinstance(s, int) for s in k.full_shape):
        return None  # a symbolic size (a decode step's cache length): left to tinygrad
    shape, outputs = list(k.full_shape), k.upcastable_dims
    flops = 2 * prod(shape)
    outer_by, dot_by = (OUTER, DOT) if flops >= MIN_FLOPS else (SMALL, SMALL)
    # Each factor is a load or elementwise work on loads (a bias added, a LayerNorm's per-row statistics):
    # its axes are the ranges its loads' indices use; it is contiguous along an axis that is a bare term
    # of a load that moves with the sum (a per-row statistic, loaded once a row, does not count).
    loads = [[u.src[1].get_idx() for u in side.toposort() if u.op is Ops.INDEX] for side in product.src]
    if any(u.op is Ops.REDUCE for side in product.src for u in side.toposort()) or not all(loads):
        return None
    last_sum = k.rngs.index(reduces[-1])
    uses = [{a for a in range(len(shape)) if any(k.rngs[a] in i.ranges for i in side)} for side in loads]
    streamed = [[i for i in side if reduces[-1] in i.ranges] for side in loads]
    contiguous = [
        {a for a in range(len(shape)) if any(k.rngs[a] in i.split_uop(Ops.ADD) for i in side)} for side in streamed
    ]
    opts: list[Opt] = []

    def shared(axis: int, side: int, width: int) -> bool:
        """Whether `side` reads the same values for `width` consecutive steps along `axis`: attention's
        heads side by side in one (B, T, n_head * head_size) axis, read per head by the other input."""
        return _only_divided(loads[side], k.rngs[axis], width)

    outer = [
        (n, side)
        for side in (0, 1)
        for n in outputs
        if n in contiguous[side] and (n not in uses[1 - side] or shared(n, 1 - side, 16))
    ]
    if outer:  # x @ W: 16 consecutive outputs of one input's row, times 4 values of the other
        # A weight gradient x.T @ dy can take the 16 along either input's row: along the output's rows
        # (its last axis, the inner loop over tiles) the 4-wide strip of the other input stays in cache
        # from one tile to the next; the other way the MLP's (512, 128) projection took 4.3 ms, not 2.2.
        stored_along = {a for a in range(len(shape)) if any(k.rngs[a] in i.split_uop(Ops.ADD) for i in _stores(k))}
        n, side = max(outer, key=lambda ns: (ns[0] in stored_along, shape[ns[0]]))
        m_axes = [a for a in outputs if a in uses[1 - side] and (a not in uses[side] or shared(a, side, 4))]
        n_by = _first_divisor(shape[n], outer_by[0])
        if n_by is None or not m_axes:
            return None
        m = max(m_axes, key=lambda a: shape[a])
        if shape[m] <= matvec.MAX_ROWS:
            return None  # a decode step's matrix-vector product: matvec.py's
        opts.append(Opt(OptOps.UPCAST, n, n_by))
        if m_by := _first_divisor(shape[m], outer_by[1]):
            opts.append(Opt(OptOps.UPCAST, m, m_by))
    elif all(last_sum in c for c in contiguous):  # dot products: both inputs read along the sum
        side_axes = [_widest([a for a in outputs if a in uses[s] and a not in uses[1 - s]], shape) for s in (0, 1)]
        if None in side_axes or min(shape[a] for a in side_axes) <= matvec.MAX_ROWS:
            return None
        for axis, choices in zip(side_axes, dot_by, strict=True):
            if by := _first_divisor(shape[axis], choices):
                opts.append(Opt(OptOps.UPCAST, axis, by))
        m = side_axes[0]
    else:
        return _column_sum(k, reduces)
    threads = NUM_CPU_THREADS.value
    if threads > 1 and flops >= parallel.MIN_PARALLEL_FLOPS:  # where threads.py runs the parts at once
        thread_axis = next((a for a in [m, *outputs] if (shape[a] // _upcast(opts, a)) % threads == 0), None)
        if thread_axis is not None:
            opts.append(Opt(OptOps.THREAD, thread_axis, threads))
    return matvec.fitting(k, opts)


def _column_sum(k: Scheduler, reduces: list[UOp]) -> tuple[Opt, ...] | None:
    """Options for a sum down the columns of a matrix (a bias's or a LayerNorm weight's gradient, summed
    over the B*T positions): tinygrad sums one column at a time, a whole row's stride between loads (about
    1 ms for a 768 x 512 matrix here); 16 columns at once read each row's 64 bytes in order (18x)."""
    if len(k.upcastable_dims) != 1:
        return None
    axis = k.upcastable_dims[0]
    if not isinstance(k.full_shape[axis], int) or k.full_shape[axis] % 16:
        return None
    loads = [u.src[1].get_idx() for u in k.reduceop.src[0].toposort() if u.op is Ops.INDEX]
    matrix = [i for i in loads if k.rngs[axis] in i.ranges]  # the rest: per-row values (LayerNorm statistics)
    terms = [list(i.split_uop(Ops.ADD)) for i in matrix]
    if not matrix or not all(k.rngs[axis] in t and not any(r in t for r in reduces) for t in terms):
        return None  # the matrix is not read along its rows: not a column sum
    return matvec.fitting(k, [Opt(OptOps.UPCAST, axis, 16)])


def _spread_transcendental(k: Scheduler, ast: UOp, renderer) -> tuple[Opt, ...] | None:
    """Only a thread split for an elementwise kernel of exponentials (a softmax's over (B, n_head, T, T)
    scores, GELU's tanh): an exp() is some twenty operations here (tinygrad computes it in code, not by an
    instruction). tinygrad's own options upcast such a kernel by 4, writing four lanes of scalar code;
    without them the innermost loop is a plain loop over consecutive elements, which clang vectorizes
    itself, 8 lanes wide (256-bit instructions in the assembly of the kernel). tinygrad also splits a
    kernel over threads by its element count alone, which leaves the baby GPT's 196,608 exponentials a
    layer on one core."""
    threads = NUM_CPU_THREADS.value
    if threads < 2 or not any(u.op in TRANSCENDENTAL for u in ast.toposort()):
        return None
    if any(not isinstance(s, int) for s in k.full_shape) or prod(k.full_shape) < MIN_SPREAD_ELEMENTS:
        return None
    axis = next((a for a in k.axes_of(AxisType.GLOBAL, AxisType.WEAK) if k.full_shape[a] % threads == 0), None)
    if axis is None:
        return None
    return matvec.fitting(k, [Opt(OptOps.THREAD, axis, threads)])


def _only_divided(indices: list[UOp], rng: UOp, width: int) -> bool:
    """Whether `rng` enters `indices` only as rng // d (times a constant) with `width` dividing d."""
    for index in indices:
        for term in index.split_uop(Ops.ADD):
            if rng not in term.toposort():
                continue
            base = term.src[0] if term.op is Ops.MUL and term.src[1].op is Ops.CONST else term
            divided = base.op in (Ops.FLOORDIV, Ops.CDIV) and base.src[0] is rng and base.src[1].op is Ops.CONST
            if not (divided and base.src[1].arg % width == 0):
                return False
    return True


def _stores(k: Scheduler) -> list[UOp]:
    """The index expressions of a kernel's stores."""
    return [u.src[0].src[1].get_idx() for u in k.ast.toposort() if u.op is Ops.STORE and u.src[0].op is Ops.INDEX]


def _widest(axes: list[int], shape: list[int]) -> int | None:
    return max(axes, key=lambda a: shape[a], default=None)


def _upcast(opts: list[Opt], axis: int) -> int:
    by = 1
    for o in opts:
        if o.op is OptOps.UPCAST and o.axis == axis:
            by *= o.arg
    return by
