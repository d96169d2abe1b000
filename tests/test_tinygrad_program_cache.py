"""Compiled kernels kept on disk (backends/tinygrad/program_cache.py): a second process reads every kernel
of a training step, its evaluation and a decode step from disk instead of compiling it, and its results
are the first process's, bit for bit."""

from __future__ import annotations

import pytest

from tests.tinygrad_helpers import differing, run_tiny_model

pytest.importorskip("tinygrad")


def test_a_second_process_reads_every_kernel_from_disk_and_gets_the_same_bits(tmp_path):
    first = run_tiny_model(tmp_path / "cache.db")
    second = run_tiny_model(tmp_path / "cache.db")
    assert first["loaded"] == 0 and first["kernels"] > 0
    assert second["loaded"] == second["kernels"] == first["kernels"]
    assert differing(first, second) == []


def test_the_switch_and_the_lookup_in_this_process(tmp_path, monkeypatch):
    """A kernel compiled once is read back from disk once it is gone from memory, and not when switched off."""
    import numpy as np
    from tinygrad import Tensor, helpers
    from tinygrad.codegen import to_program_cache
    from tinygrad.helpers import Context

    from backends import get_backend
    from backends.tinygrad import program_cache

    get_backend("tinygrad")  # installs the compile hook
    # A disk cache of this test's own: tinygrad connects to CACHEDB once and remembers the tables it made.
    monkeypatch.setattr(helpers, "CACHEDB", str(tmp_path / "cache.db"))
    monkeypatch.setattr(helpers, "_db_connection", None)
    monkeypatch.setattr(helpers, "_db_tables", set())
    x = Tensor(np.arange(37 * 3, dtype=np.float32).reshape(37, 3))  # a shape no other test compiles

    def run() -> set:
        """Realize a fresh kernel; the in-memory cache keys it added."""
        before = set(to_program_cache)
        with Context(PARALLEL=0):
            (x * 3 + 1).sum(axis=1).realize()
        return set(to_program_cache) - before

    new = run()
    assert new and not new & program_cache.loaded  # compiled here, and written to disk
    for enabled in (False, True):
        for key in new:
            to_program_cache.pop(key)
        monkeypatch.setattr(program_cache, "ENABLED", enabled)
        assert run() == new
        assert (new <= program_cache.loaded) == enabled
