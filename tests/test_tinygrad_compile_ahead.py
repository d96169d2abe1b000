"""A training step's two schedules compiled as one batch (backends/tinygrad/compile_ahead.py): the same
kernels and the same bits as the two parts realized in turn. (That a later process finds every kernel
on disk, this path being the default, is test_tinygrad_program_cache.py's first test.)"""

from __future__ import annotations

import pytest

from tests.tinygrad_helpers import differing, one_clang_applies, run_tiny_model

pytest.importorskip("tinygrad")
if not one_clang_applies():
    pytest.skip("compile_ahead.py batches one_clang.py's compiles (C renderer, x86-64)", allow_module_level=True)


def test_compiling_ahead_gives_the_bits_of_realizing_in_turn(tmp_path):
    ahead = run_tiny_model(tmp_path / "ahead.db", GPT_TINYGRAD_COMPILE_AHEAD="1")
    in_turn = run_tiny_model(tmp_path / "in_turn.db", GPT_TINYGRAD_COMPILE_AHEAD="0")
    assert ahead["ahead"] > 10 and in_turn["ahead"] == 0
    assert ahead["kernels"] == in_turn["kernels"]  # the same number of distinct kernels, compiled either way
    assert differing(ahead, in_turn) == []

