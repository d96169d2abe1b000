"""A cold first step compiles faster: tinygrad's compile workers started early and kept alive.

tinygrad 0.14 lowers and compiles a step's kernels in a pool of worker processes (PARALLEL of them,
one per CPU thread), but two of its defaults cost a cold first step seconds on a small machine:

- the pool is spawned when the first kernels are ready to compile, so every worker then imports
  tinygrad (about a second) while the step waits; `start()` spawns it when the backend is built, so
  the imports overlap building the model and scheduling the step;
- each worker is replaced after BEAM_MAX_TASKS_PER_CHILD=16 kernels (a guard against BEAM search's
  memory growth), so a 100-kernel step spawned a dozen fresh workers, each importing tinygrad again
  and warming its pattern-matcher caches from nothing. Here the limit is raised to 512 unless the
  environment sets it.

Neither changes a compiled kernel, only when and where it is compiled. `GPT_TINYGRAD_EARLY_POOL=0`
turns both off.
"""

from __future__ import annotations

import multiprocessing
import os

ENABLED = os.environ.get("GPT_TINYGRAD_EARLY_POOL", "1") != "0"
TASKS_PER_WORKER = 512


def start() -> None:
    """Spawn tinygrad's compile pool now, its workers kept for TASKS_PER_WORKER kernels (idempotent)."""
    if not ENABLED or multiprocessing.current_process().daemon:  # a pool's own worker makes no pool
        return
    # Read once, when the pool is made (tinygrad's getenv is cached): set before that.
    os.environ.setdefault("BEAM_MAX_TASKS_PER_CHILD", str(TASKS_PER_WORKER))
    from tinygrad.engine.worker import get_worker_pool

    get_worker_pool()  # returns once the processes are started, not once they have imported anything
