"""The tinygrad speed levers change no number: parallel kernel parts (backends/tinygrad/threads.py),
the C-call replay of captured steps (replay.py) and tuned kernels from the disk cache (tune.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tinygrad")
from tinygrad import Tensor, TinyJit  # noqa: E402

from backends import get_backend  # noqa: E402
from backends.tinygrad import replay, threads, tune  # noqa: E402
from core.model.config import GPTConfig, TrainConfig  # noqa: E402
from core.model.params import init_params  # noqa: E402

CONFIG = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)


@settings(max_examples=4)
@given(seed=st.integers(0, 2**32 - 1))
def test_parallel_parts_give_the_sequential_result(seed):
    """A matmul big enough for tinygrad to split into thread parts: the same bits whether the parts run
    at once or in turn (each part writes its own rows)."""
    rng = np.random.default_rng(seed)
    a, b = (Tensor(rng.standard_normal((256, 256), dtype=np.float32)).realize() for _ in range(2))
    was = threads.enabled()
    try:
        results = {}
        for on in (True, False):
            threads.enable(on)
            results[on] = (a @ b).relu().numpy()
        np.testing.assert_array_equal(results[True], results[False])
    finally:
        threads.enable(was)


def test_parts_handed_over_without_polling_give_the_same_result():
    """Where the C poll library cannot be built, workers only sleep and wake (threads.py): the same bits,
    a worker's error still reaches the caller, and the next kernel still runs."""
    rng = np.random.default_rng(0)
    a, b = (Tensor(rng.standard_normal((256, 256), dtype=np.float32)).realize() for _ in range(2))
    was, library = threads.enabled(), threads._poll_library()
    try:
        threads.enable(True)
        polled = (a @ b).numpy()
        threads._library = None
        assert threads._poll_library() is None
        np.testing.assert_array_equal((a @ b).numpy(), polled)

        def failing(part, *_):  # only the worker's part (part 1) fails
            if part.value:
                raise RuntimeError("part failed")

        with pytest.raises(RuntimeError, match="part failed"):
            threads.run_parts(failing, [None], 0, 2)
        np.testing.assert_array_equal((a @ b).numpy(), polled)
    finally:
        threads._library = library
        threads.enable(was)


def _train_and_decode(use_replay: bool, seed: int) -> tuple[list[float], dict, list[np.ndarray]]:
    saved = replay.ENABLED
    replay.ENABLED = use_replay
    try:
        model = get_backend("tinygrad").build(CONFIG, init_params(CONFIG, seed=seed), TrainConfig(batch_size=4))
    finally:
        replay.ENABLED = saved
    assert model._step_jit.usable == use_replay
    rng = np.random.default_rng(seed)
    losses = []
    for lr in (1e-3, 5e-4, 2e-4, 1e-4):  # calls 0 and 1 compile and capture; 2 and 3 replay
        batch = rng.integers(0, CONFIG.vocab_size, (4, CONFIG.block_size + 1))
        losses.append(model.train_step(batch[:, :-1], batch[:, 1:], lr))
    prompt = rng.integers(0, CONFIG.vocab_size, (2, 3))
    logits = [model.prefill(prompt)]
    for _ in range(4):
        logits.append(model.decode(np.argmax(logits[-1], axis=-1)))
    return losses, model.params(), logits


@settings(max_examples=2)
@given(seed=st.integers(0, 2**16))
def test_replay_matches_tinyjit_exactly(seed):
    """Training steps and decode steps replayed as C calls: the losses, weights and logits of TinyJit, bit for bit."""
    fast, plain = _train_and_decode(True, seed), _train_and_decode(False, seed)
    assert fast[0] == plain[0]
    for name in plain[1]:
        np.testing.assert_array_equal(fast[1][name], plain[1][name], err_msg=name)
    for a, b in zip(fast[2], plain[2]):
        np.testing.assert_array_equal(a, b)


def test_replay_falls_back_when_inputs_move():
    """A replayed function given new input buffers goes back to TinyJit (whose answer stays right)."""
    step = replay.Replay(lambda x: (x * 2 + 1).realize(), "CPU")
    for i in range(3):
        out = step(Tensor(np.full(8, i, dtype=np.float32)).realize())
        np.testing.assert_array_equal(out.numpy(), np.full(8, 2 * i + 1, dtype=np.float32))
    assert not step.usable


def test_tuned_options_are_found_and_change_no_result(tmp_path, monkeypatch):
    """`tune` stores a kernel's BEAM result in the disk cache; compiling that kernel again picks it up
    (counted by `found`) and computes the same numbers."""
    import tinygrad.helpers as helpers
    from tinygrad.codegen import to_program_cache

    monkeypatch.setattr(helpers, "CACHEDB", str(tmp_path / "cache.db"))
    monkeypatch.setattr(helpers, "_db_connection", None)
    monkeypatch.setattr(helpers, "_db_tables", set())
    tune.install()
    rng = np.random.default_rng(0)
    a = Tensor(rng.standard_normal((64, 96), dtype=np.float32)).realize()
    b = Tensor(rng.standard_normal((96, 48), dtype=np.float32)).realize()

    def jitted():
        return TinyJit(lambda x, y: (x @ y).relu().realize())

    f = jitted()
    before = [f(a, b).numpy() for _ in range(3)][-1]
    result = tune.tune([lambda: f(a, b)], seconds=120, beam=1, log=lambda _: None)
    assert result["searched"] == 1 and result["time_share_tuned"] == 1.0
    to_program_cache.clear()  # compile again, as a new process would
    monkeypatch.setattr(tune, "_tuned", set())
    g = jitted()
    after = [g(a, b).numpy() for _ in range(3)][-1]
    assert tune.found()[0] == 1  # the matmul came back with its tuned options ...
    applied = [[str(o) for o in p.src[0].arg.applied_opts] for p in to_program_cache.values()]
    assert result["results"][0]["opts"] in applied  # ... and was compiled with them
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
