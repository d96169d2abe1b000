"""Wider vector loads and stores (backends/tinygrad/wide_loads.py): they reach the kernels tinygrad compiles,
in its worker processes too, and change no result: every value is the same, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tinygrad")
from tinygrad import Tensor  # noqa: E402
from tinygrad.codegen import to_program_cache  # noqa: E402
from tinygrad.uop.ops import Ops  # noqa: E402

from backends import get_backend  # noqa: E402
from backends.tinygrad import wide_loads  # noqa: E402
from core.model.config import GPTConfig, TrainConfig  # noqa: E402
from core.model.params import init_params  # noqa: E402

get_backend("tinygrad")  # installs the pass


def _new_sources(before: set) -> list[str]:
    """The C source of every kernel compiled since `before` (a set of program cache keys)."""
    programs = [p for k, p in to_program_cache.items() if k not in before]
    return [p.src[2].arg for p in programs if len(p.src) > 2 and p.src[2].op is Ops.SOURCE]


def _matmul(a: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, list[str]]:
    before = set(to_program_cache)
    out = (Tensor(a) @ Tensor(w)).numpy()
    return out, _new_sources(before)


@pytest.mark.parametrize("shape", [(256, 256, 512), (128, 512, 328)])  # (M, K, N): N a multiple of 16, and of 8 only
def test_matmul_takes_wide_accesses_and_gives_the_same_bits(shape):
    """A matmul with our options (over gemm.MIN_FLOPS) loads and stores 16 (or 8) floats at once, and its
    result is equal, bit for bit, to the kernel compiled without the pass."""
    M, K, N = shape
    rng = np.random.default_rng(M + K + N)
    a, w = rng.standard_normal((M, K), dtype=np.float32), rng.standard_normal((K, N), dtype=np.float32)
    wide, wide_sources = _matmul(a, w)
    with wide_loads.disabled():
        narrow, narrow_sources = _matmul(a, w)
    assert np.array_equal(wide, narrow)
    np.testing.assert_allclose(wide, a @ w, rtol=1e-4, atol=1e-3)
    assert any("float16" in s or "float8" in s for s in wide_sources), "no wide access in the matmul kernel"
    assert not any("float16" in s or "float8" in s for s in narrow_sources)


def test_training_steps_are_the_same_bit_for_bit():
    """Two training steps of a small GPT (its kernels compiled by tinygrad's worker processes) give the same
    losses and weights with and without the pass, and the compiled kernels did take wide accesses."""
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=1, n_head=4, n_embd=128)
    params = init_params(config, seed=0)
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (2, 12, config.block_size + 1))
    backend = get_backend("tinygrad")

    def train() -> tuple[list[float], dict[str, np.ndarray]]:
        model = backend.build(config, params, TrainConfig(batch_size=12))
        losses = [model.train_step(t[:, :-1], t[:, 1:], 1e-3) for t in tokens]
        return losses, model.params()

    before = set(to_program_cache)
    wide = train()
    sources = _new_sources(before)
    with wide_loads.disabled():
        narrow = train()
    assert wide[0] == narrow[0]
    for name, value in wide[1].items():
        assert np.array_equal(value, narrow[1][name]), name
    assert sum("float16" in s for s in sources) >= 5, "too few kernels with 16-wide accesses"
