"""Compiled kernels kept on disk (backends/tinygrad/program_cache.py): a second process reads every kernel
of a training step, its evaluation and a decode step from disk instead of compiling it, and its results
are the first process's, bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tinygrad")

ROOT = Path(__file__).resolve().parents[1]

# One process: a tiny model's training steps, logits and a cached decode, with what came from disk.
CHILD = r"""
import json, sys
import numpy as np
from backends import get_backend
from backends.tinygrad import program_cache
from core.model.config import GPTConfig, TrainConfig
from core.model.params import init_params
from tinygrad.codegen import to_program_cache
config = GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32, dropout=0.0)
model = get_backend("tinygrad").build(config, init_params(config, seed=0), TrainConfig(batch_size=4))
data = np.random.default_rng(0).integers(0, 64, (4, 17))
losses = [model.train_step(data[:, :-1], data[:, 1:], 1e-3) for _ in range(3)]
logits = model.logits(data[:, :-1])
decoded = [model.prefill(data[:1, :4])] + [model.decode(np.array([t])) for t in (1, 2, 3)]
print(json.dumps({"losses": [float(x).hex() for x in losses], "logits": logits.tobytes().hex(),
                  "decoded": [d.tobytes().hex() for d in decoded],
                  "loaded": len(program_cache.loaded), "kernels": len(to_program_cache)}))
"""


def _run(cachedb: Path, enabled: bool = True) -> dict:
    env = {**os.environ, "CACHEDB": str(cachedb), "GPT_TINYGRAD_PROGRAM_CACHE": "1" if enabled else "0"}
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_second_process_reads_every_kernel_from_disk_and_gets_the_same_bits(tmp_path):
    first = _run(tmp_path / "cache.db")
    second = _run(tmp_path / "cache.db")
    assert first["loaded"] == 0 and first["kernels"] > 0
    assert second["loaded"] == second["kernels"] == first["kernels"]
    for what in ("losses", "logits", "decoded"):
        assert second[what] == first[what], what


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
