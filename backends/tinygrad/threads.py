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

Handing a part to a sleeping thread and waiting for it costs two wake-ups, and here a core that has
been idle for a millisecond takes long to wake: a thread pool's round trip was 22 us back to back, 84
us (390 us at p90) after 2 ms idle. A baby-GPT training step hands over some 70 parts, with small
kernels between them. So each worker, once its part is done, polls for the next one for SPIN_SECONDS
before it sleeps, and the caller polls for the worker's part the same way: the training step in 0.885-0.96x
the time of a thread pool (two runs side by side in one process, scratch; a first version 0.71-0.79x;
tinygrad-cpu.md round 9).
They poll in C (`_POLL_C`, built once by clang into the folder of tinygrad's CACHEDB), because polling
in Python holds the GIL that the caller needs between kernels (an os.sched_yield loop: 0.75x where C
gave 0.71x). Where that library cannot be built, the threads only sleep and wake. One caller at a
time hands out parts (`_running`): a second thread running kernels waits its turn.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

from tinygrad.helpers import CACHEDB
from tinygrad.runtime.ops_cpu import CPUProgram

ENABLED = os.environ.get("GPT_TINYGRAD_THREADS", "1") != "0"
# Work from which a kernel's parts are spread over threads (below: run in turn on one thread). Handing a
# part to another thread costs tens of microseconds on an idle machine and far more on a loaded one, so
# only kernels of a millisecond or so gain: measured by estimated FLOPs where known (replay.py), else by
# output bytes.
MIN_PARALLEL_FLOPS = int(os.environ.get("GPT_TINYGRAD_PARALLEL_FLOPS", 8_000_000))
MIN_PARALLEL_BYTES = int(os.environ.get("GPT_TINYGRAD_PARALLEL_BYTES", 262_144))
SPIN_SECONDS = 0.001  # how long a worker polls for its next part (and the caller for a worker's) before sleeping

_POLL_C = r"""
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
/* 1 as soon as *flag == want, 0 once `seconds` have passed; never sleeps. */
int poll_until(volatile int *flag, int want, double seconds) {
  double end = now() + seconds;
  for (;;) {
    for (int i = 0; i < 64; i++) {
      if (__atomic_load_n(flag, __ATOMIC_ACQUIRE) == want) return 1;
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
    if (now() > end) return 0;
  }
}
"""

_sequential_call = CPUProgram.__call__
_workers: list[_Worker] = []
_lock = threading.Lock()
_running = threading.Lock()  # held while one caller's parts run: the workers serve one caller at a time
_library: ctypes.CDLL | None | bool = False  # False: not built yet; None: could not be built
os.register_at_fork(after_in_child=_workers.clear)  # a forked child has none of its parent's threads


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
    with _running:
        with _lock:
            while len(_workers) < parts - 1:
                _workers.append(_Worker())
        workers = _workers[: parts - 1]
        for part, worker in enumerate(workers, start=1):
            worker.run(fxn, _with_part(args, slot, part))
        try:
            fxn(*_with_part(args, slot, 0))
        finally:  # every part has finished before this returns, or raises
            for worker in workers:
                worker.wait()  # re-raises a worker's error here


def _with_part(args: list, slot: int, part: int) -> list:
    mine = list(args)
    mine[slot] = ctypes.c_uint64(part)
    return mine


class _Worker:
    """A thread that runs one kernel part at a time. The caller hands it a part by setting `task`, then the
    flag `start`; the worker sets `done` when the part has run. The flags are C ints so that C can poll
    them; the events wake a thread that stopped polling."""

    def __init__(self) -> None:
        self.start, self.done = ctypes.c_int(0), ctypes.c_int(1)
        self.started, self.finished = threading.Event(), threading.Event()
        self.task: tuple | None = None
        self.error: BaseException | None = None
        threading.Thread(target=self._loop, name="tinygrad-cpu", daemon=True).start()

    def run(self, fxn, args: list) -> None:
        self.done.value = 0
        self.task = (fxn, args)
        self.start.value = 1
        self.started.set()

    def wait(self) -> None:
        _wait_for(self.done, self.finished)
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _loop(self) -> None:
        while True:
            _wait_for(self.start, self.started)
            fxn, args = self.task
            self.start.value = 0
            try:
                fxn(*args)  # ctypes lets go of the GIL while the kernel runs
            except BaseException as error:  # handed to the caller by wait()
                self.error = error
            self.done.value = 1
            self.finished.set()


def _wait_for(flag: ctypes.c_int, event: threading.Event) -> None:
    """Return once `flag` is 1: polled for SPIN_SECONDS, then asleep until `event` (set after the flag)."""
    poll = _poll_library()
    if poll is not None and poll.poll_until(flag, 1, SPIN_SECONDS):
        return
    while flag.value != 1:
        event.wait()
        event.clear()


def _poll_library() -> ctypes.CDLL | None:
    """`_POLL_C` as a shared library, built once with clang (the compiler tinygrad's CPU device uses) into
    tinygrad's cache folder; None where that fails."""
    global _library
    if _library is not False:
        return _library
    with _lock:
        if _library is False:
            _library = _build_poll_library()
    return _library


def _build_poll_library() -> ctypes.CDLL | None:
    digest = hashlib.sha256(_POLL_C.encode()).hexdigest()[:16]
    path = Path(CACHEDB).parent / f"gpt_poll_{digest}.so"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(f"{path.name}.{os.getpid()}.part")  # renamed when complete: no half-written library
            compiler = [os.environ.get("CC", "clang"), "-O2", "-shared", "-fPIC", "-x", "c", "-", "-o", str(part)]
            subprocess.run(compiler, input=_POLL_C.encode(), check=True, capture_output=True)
            os.replace(part, path)
        library = ctypes.CDLL(str(path))
    except (OSError, subprocess.CalledProcessError):
        return None
    library.poll_until.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_double]
    library.poll_until.restype = ctypes.c_int
    return library


def enable(on: bool = True) -> None:
    """Run CPU kernel parts in parallel (on) or in turn, as tinygrad does (off)."""
    CPUProgram.__call__ = _parallel_call if on else _sequential_call


def enabled() -> bool:
    return CPUProgram.__call__ is _parallel_call
