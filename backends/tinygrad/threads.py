"""Run tinygrad's CPU kernels on every core: the threads its kernels are split into, run at once.

tinygrad 0.14 splits a CPU kernel's outermost loop into NUM_CPU_THREADS parts (a `core_id`
argument), but `CPUProgram.__call__` then calls the parts one after another in the calling thread:
the process uses one core however many it has (measured here: process CPU time equals wall time,
and a 1024^3 matmul runs no faster with NUM_CPU_THREADS=2 than with 1). `enable()` replaces that
call by one that hands parts 1..n-1 to worker threads and runs part 0 itself. A compiled kernel is
a ctypes function, and ctypes releases the GIL while it runs, so the parts really run in parallel.
Each part writes its own slice of the output, so the result is bit for bit the sequential one.

Small kernels stay on the calling thread: waking a worker costs tens of microseconds, more than a
small kernel takes (a decode step is mostly such kernels). `GPT_TINYGRAD_THREADS=0` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tinygrad.runtime.ops_cpu import CPUProgram

ENABLED = os.environ.get("GPT_TINYGRAD_THREADS", "1") != "0"
# Work from which a kernel's parts are spread over threads (below: run in turn on one thread). Handing a
# part to another thread costs tens of microseconds on an idle machine and far more on a loaded one, so
# only kernels of a millisecond or so gain: measured by estimated FLOPs where known (replay.py), else by
# output bytes.
MIN_PARALLEL_FLOPS = int(os.environ.get("GPT_TINYGRAD_PARALLEL_FLOPS", 8_000_000))
MIN_PARALLEL_BYTES = int(os.environ.get("GPT_TINYGRAD_PARALLEL_BYTES", 262_144))

_sequential_call = CPUProgram.__call__
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _parallel_call(
    self: CPUProgram, *bufs, global_size=(1, 1, 1), local_size=(1, 1, 1), vals=(), wait=False, timeout=None
):
    parts = global_size[0]
    slot = self.runtimevars.get("core_id")
    if self.lvp or slot is None or parts == 1 or bufs[0].size < MIN_PARALLEL_BYTES:
        return _sequential_call(
            self, *bufs, global_size=global_size, local_size=local_size, vals=vals, wait=wait, timeout=timeout
        )
    start = time.perf_counter()
    # The core_id slot holds None until each part fills it in.
    run_parts(self.fxn, [ctypes.c_uint64(x or 0) for x in (*[b.va_addr for b in bufs], *vals)], slot, parts)
    return time.perf_counter() - start if wait else None


def run_parts(fxn, args: list, slot: int, parts: int) -> None:
    """Call the C function `fxn` once per thread part, `args[slot]` set to the part: parts 1.. on worker
    threads, part 0 on this one, returning when all are done."""

    def run(part: int) -> None:
        mine = list(args)
        mine[slot] = ctypes.c_uint64(part)
        fxn(*mine)

    futures = [_workers().submit(run, part) for part in range(1, parts)]
    run(0)
    for future in futures:
        future.result()  # re-raises a worker's error here


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="tinygrad-cpu")
        return _pool


def enable(on: bool = True) -> None:
    """Run CPU kernel parts in parallel (on) or in turn, as tinygrad does (off)."""
    CPUProgram.__call__ = _parallel_call if on else _sequential_call


def enabled() -> bool:
    return CPUProgram.__call__ is _parallel_call
