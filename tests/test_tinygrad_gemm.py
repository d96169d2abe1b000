"""Our options for training and prefill matmuls (backends/tinygrad/gemm.py): chosen by layout, applied to the
kernel tinygrad compiles, and the products stay right in every layout a training step has."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tinygrad")
from tinygrad import Tensor  # noqa: E402
from tinygrad.codegen import to_program_cache  # noqa: E402
from tinygrad.helpers import NUM_CPU_THREADS  # noqa: E402

from backends import get_backend  # noqa: E402
from backends.tinygrad import gemm  # noqa: E402
from backends.tinygrad.replay import Replay  # noqa: E402

get_backend("tinygrad")  # installs the compile hook that asks gemm.py

# name -> (shapes of a and b from (M, K, N), the product in tinygrad, the same in numpy)
LAYOUTS = {
    "x @ W": (lambda M, K, N: ((M, K), (K, N)), lambda a, b: a @ b, lambda a, b: a @ b),
    "dy @ W.T": (lambda M, K, N: ((M, K), (N, K)), lambda a, b: a @ b.T, lambda a, b: a @ b.T),
    "x.T @ dy": (lambda M, K, N: ((K, M), (K, N)), lambda a, b: a.T @ b, lambda a, b: a.T @ b),
    "LayerNorm(x) @ W": (
        lambda M, K, N: ((M, K), (K, N)),
        lambda a, b: (a - a.mean(-1, keepdim=True).contiguous()) @ b,
        lambda a, b: (a - a.mean(-1, keepdims=True)) @ b,
    ),
}


def _product(layout: str, M: int, K: int, N: int, seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    """(tinygrad's product through a jitted step, numpy's, the options of the kernels it compiled)."""
    shapes, ours, theirs = LAYOUTS[layout]
    rng = np.random.default_rng(seed)
    a_np, b_np = (rng.standard_normal(s, dtype=np.float32) for s in shapes(M, K, N))
    b = Tensor(b_np).realize()
    before = set(to_program_cache)
    step = Replay(lambda a: ours(a, b).realize(), "CPU")
    a = Tensor(a_np).realize()
    for _ in range(3):  # run, capture, replay
        out = step(a).numpy()
    opts = [p.src[0].arg.applied_opts for k, p in to_program_cache.items() if k not in before]
    return out, theirs(a_np, b_np), opts


@settings(max_examples=6, deadline=None)  # hypothesis and function-scoped fixtures: MIN_FLOPS set inside
@given(
    layout=st.sampled_from(sorted(LAYOUTS)),
    M=st.sampled_from([32, 48, 96]),
    K=st.sampled_from([16, 64, 72]),
    N=st.sampled_from([24, 64, 80]),
    small=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_products_stay_right(layout, M, K, N, small, seed):
    """Every layout of a training step's matmuls, with our options where they apply (large tiles, or the
    small ones below gemm.MIN_FLOPS), agrees with numpy."""
    saved, gemm.MIN_FLOPS = gemm.MIN_FLOPS, 10**18 if small else 0
    try:
        out, want, _ = _product(layout, M, K, N, seed)
    finally:
        gemm.MIN_FLOPS = saved
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.sqrt(K))


def _applied(opts: list) -> list[set]:
    return [{(o.op.name, o.arg) for o in applied} for applied in opts]


@pytest.fixture
def every_size(monkeypatch):
    """Our options for kernels of any size (by default only from gemm.MIN_FLOPS, to save compile time)."""
    monkeypatch.setattr(gemm, "MIN_FLOPS", 0)


def test_outer_product_layouts_get_16_by_4_tiles(every_size):
    """x @ W and the weight gradient x.T @ dy: 16 outputs along the contiguous axis, 4 along the other,
    the sum not unrolled, and (large enough) split over the threads."""
    for layout in ("x @ W", "x.T @ dy", "LayerNorm(x) @ W"):
        _, _, opts = _product(layout, 256, 128, 256, seed=0)
        tiles = [a for a in _applied(opts) if ("UPCAST", 16) in a]
        assert tiles, (layout, opts)
        assert ("UPCAST", 4) in tiles[0] and not any(op == "UNROLL" for op, _ in tiles[0]), (layout, opts)
        if NUM_CPU_THREADS.value > 1:
            assert ("THREAD", NUM_CPU_THREADS.value) in tiles[0], (layout, opts)


def test_dot_product_layout_gets_8_by_4_tiles(every_size):
    """dy @ W.T (the sum contiguous in both inputs): 8 outputs along one axis, 4 along the other."""
    _, _, opts = _product("dy @ W.T", 256, 128, 256, seed=0)
    assert any({("UPCAST", 8), ("UPCAST", 4)} <= a for a in _applied(opts)), opts


def test_column_sums_read_16_columns_at_once():
    """A bias's gradient (a sum over the rows of a (positions, out) matrix) gets 16 columns at once."""
    rng = np.random.default_rng(3)
    a_np = rng.standard_normal((96, 48), dtype=np.float32)
    before = set(to_program_cache)
    step = Replay(lambda a: a.sum(0).realize(), "CPU")
    a = Tensor(a_np).realize()
    for _ in range(3):
        out = step(a).numpy()
    np.testing.assert_allclose(out, a_np.sum(0), rtol=1e-5, atol=1e-4)
    opts = [p.src[0].arg.applied_opts for k, p in to_program_cache.items() if k not in before]
    assert any(("UPCAST", 16) in a for a in _applied(opts)), opts


def test_small_matmuls_get_4_by_2_tiles():
    """Below gemm.MIN_FLOPS larger tiles cost more compile time than they save: 4 outputs by 2, in both
    forms, and nothing larger (tinygrad's own options upcast such a kernel 4 x 4 and unroll its sum)."""
    for layout in ("x @ W", "dy @ W.T"):
        out, want, opts = _product(layout, 64, 64, 64, seed=4)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)
        applied = [a for a in _applied(opts) if ("UPCAST", 4) in a]
        assert applied and applied[0] == {("UPCAST", 4), ("UPCAST", 2)}, (layout, opts)


def test_decode_sized_products_are_not_ours(every_size):
    """At most 8 rows is a decode step's matrix-vector product (matvec.py's), not a matmul for gemm.py."""
    chosen = set(gemm.chosen)
    out, want, _ = _product("x @ W", 8, 64, 64, seed=1)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)
    assert gemm.chosen == chosen


def test_switched_off_compiles_tinygrads_own(monkeypatch, every_size):
    """GPT_TINYGRAD_GEMM=0 (ENABLED False): no options of ours, the same product."""
    monkeypatch.setattr(gemm, "ENABLED", False)
    chosen = set(gemm.chosen)
    out, want, _ = _product("x @ W", 40, 24, 56, seed=2)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)
    assert gemm.chosen == chosen


def test_a_softmax_exponentials_are_split_over_the_threads():
    """exp() of (B, n_head, T, T) scores, which tinygrad leaves on one thread for its element count alone:
    a thread split and nothing else (no upcast: clang vectorizes the plain loop), and the same numbers as
    numpy's exp to float32 round-off."""
    rng = np.random.default_rng(5)
    scores_np = rng.standard_normal((48, 64, 64), dtype=np.float32)
    top_np = scores_np.max(-1, keepdims=True)
    before = set(to_program_cache)
    step = Replay(lambda s, m: (s - m).exp().realize(), "CPU")
    scores, top = Tensor(scores_np).realize(), Tensor(top_np).realize()
    for _ in range(3):
        out = step(scores, top).numpy()
    np.testing.assert_allclose(out, np.exp(scores_np - top_np), rtol=1e-6, atol=1e-7)
    opts = _applied([p.src[0].arg.applied_opts for k, p in to_program_cache.items() if k not in before])
    if NUM_CPU_THREADS.value > 1:
        assert [("THREAD", NUM_CPU_THREADS.value)] in [sorted(a) for a in opts], opts


def test_small_elementwise_kernels_are_left_to_tinygrad():
    """Below gemm.MIN_SPREAD_ELEMENTS the parts would run in turn anyway (threads.py): no options of ours."""
    chosen = set(gemm.chosen)
    x_np = np.random.default_rng(6).standard_normal((16, 64), dtype=np.float32)
    np.testing.assert_allclose(Tensor(x_np).exp().numpy(), np.exp(x_np), rtol=1e-6)
    assert gemm.chosen == chosen
