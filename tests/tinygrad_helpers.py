"""What the tinygrad compile tests share: a fresh process that trains a tiny model a few steps,
evaluates it and decodes from its cache, with the bits of every result and how its kernels were
compiled, so that two processes' results can be compared bit for bit."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json
import numpy as np
from backends import get_backend
from backends.tinygrad import one_clang, program_cache
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
                  "decoded": [d.tobytes().hex() for d in decoded], "loaded": len(program_cache.loaded),
                  "kernels": len(to_program_cache), "together": one_clang.compiled_together}))
"""
RESULTS = ("losses", "logits", "decoded")  # what must agree bit for bit between two processes


def differing(*runs: dict) -> list[str]:
    """Which of RESULTS are not the same bits in every one of `runs` (none: all agree)."""
    return [what for what in RESULTS if any(run[what] != runs[0][what] for run in runs[1:])]


def one_clang_applies() -> bool:
    """Whether backends/tinygrad/one_clang.py compiles here: tinygrad's C renderer on x86-64, with clang."""
    return platform.machine().lower() in ("x86_64", "amd64") and shutil.which("clang") is not None


def run_tiny_model(cachedb: Path, **env: str) -> dict:
    """CHILD in a fresh process with tinygrad's disk cache at `cachedb` and `env` added to the environment."""
    full_env = {**os.environ, "CACHEDB": str(cachedb), **env}
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
