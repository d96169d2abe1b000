"""Our options for a decode step's matrix-vector products (backends/tinygrad/matvec.py): chosen for the
decode shapes of both weight layouts, left out of training-size matmuls, and the products stay right."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tinygrad")
from tinygrad import Tensor  # noqa: E402
from tinygrad.codegen import to_program_cache  # noqa: E402

from backends import get_backend  # noqa: E402
from backends.tinygrad import matvec  # noqa: E402
from backends.tinygrad.replay import Replay  # noqa: E402

get_backend("tinygrad")  # installs the compile hook that asks matvec.py


def _product(x: np.ndarray, w: np.ndarray, by_row: bool) -> tuple[np.ndarray, list]:
    """x @ w (or x @ w.T, `by_row`) through a jitted step, and the options its kernel was compiled with."""
    wt = Tensor(w).realize()
    before = set(to_program_cache)
    step = Replay(lambda a: (a @ (wt.T if by_row else wt)).realize(), "CPU")
    xt = Tensor(x).realize()
    for _ in range(3):  # run, capture, replay
        out = step(xt).numpy()
    opts = [p.src[0].arg.applied_opts for k, p in to_program_cache.items() if k not in before]
    return out, opts


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.sampled_from([1, 8]), by_row=st.booleans())
def test_decode_products_stay_right(seed, batch, by_row):
    """The products of a decode step's shapes, with our options where they apply, agree with numpy's."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 64), dtype=np.float32)
    w = rng.standard_normal((96, 64) if by_row else (64, 96), dtype=np.float32)
    out, _ = _product(x, w, by_row)
    np.testing.assert_allclose(out, x @ (w.T if by_row else w), rtol=1e-4, atol=1e-4)


def test_the_options_per_layout_and_batch():
    """Weight (in, out): 16 outputs at once, both rows at batch 2 (sum unrolled), all 8 at batch 8; weight
    (out, in) at batch 1: 8 dot products."""
    rng = np.random.default_rng(0)
    x1, x2, x8 = (rng.standard_normal((b, 64), dtype=np.float32) for b in (1, 2, 8))
    w_in_out, w_out_in = (rng.standard_normal(s, dtype=np.float32) for s in ((64, 128), (256, 64)))
    cases = [(x1, w_in_out, False), (x2, w_in_out, False), (x8, w_in_out, False), (x1, w_out_in, True)]
    wanted = [
        {("UPCAST", 16), ("UNROLL", 4)},
        {("UPCAST", 16), ("UPCAST", 2), ("UNROLL", 4)},
        {("UPCAST", 16), ("UPCAST", 8)},
        {("UPCAST", 8), ("UNROLL", 8)},
    ]
    for (x, w, by_row), want in zip(cases, wanted):
        out, opts = _product(x, w, by_row)
        np.testing.assert_allclose(out, x @ (w.T if by_row else w), rtol=1e-4, atol=1e-4)
        assert any({(o.op.name, o.arg) for o in applied} == want for applied in opts), opts


def test_training_size_matmuls_are_left_to_tinygrad():
    """64 rows is a training or prefill matmul, not a decode step's: no options of ours."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((64, 64), dtype=np.float32), rng.standard_normal((64, 80), dtype=np.float32)
    chosen = set(matvec.chosen)
    out, _ = _product(x, w, by_row=False)
    np.testing.assert_allclose(out, x @ w, rtol=1e-4, atol=1e-4)
    assert matvec.chosen == chosen
