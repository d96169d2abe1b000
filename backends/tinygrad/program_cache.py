"""Compiled kernels kept on disk whole, so that a later run skips tinygrad's code generation for them.

tinygrad 0.14 keeps the compiler's output on disk (its sqlite CACHEDB, keyed by the C source), but
not the step before: turning a kernel's AST into that source (tinygrad's rewrite passes, in Python)
runs again in every new process. For the README's default run that is most of a first step even on
a warm cache: about 14 CPU seconds of code generation against 9 of clang, measured here by timing
both for each of the step's kernels. So each compiled kernel (tinygrad's PROGRAM: its code, source
and binary) is also written to the same CACHEDB, table `gpt_programs`, and a later process looks a
kernel up there before compiling it.

The key is tinygrad's own in-memory one (the kernel's AST, which holds our options, the renderer and
its target, tinygrad's code-generation settings) plus what else changes the program: tinygrad's
version, whether wide_loads.py's pass is on and that file's text, the CPU model (clang compiles for
the machine it runs on). A kernel found there is the one this process would compile: same AST, same
passes. The table grows with every new shape, as tinygrad's own tables do (a kernel up to 76 KB
pickled, 1.7 MB for the 110 of the default run's training step); deleting CACHEDB clears them all.
`GPT_TINYGRAD_PROGRAM_CACHE=0` (or tinygrad's CACHELEVEL=0) turns it off.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path

from tinygrad.codegen import to_program_cache, to_program_key
from tinygrad.engine import realize
from tinygrad.helpers import diskcache_get, diskcache_put
from tinygrad.renderer import Renderer
from tinygrad.uop.ops import Ops, UOp

from backends.tinygrad import wide_loads

ENABLED = os.environ.get("GPT_TINYGRAD_PROGRAM_CACHE", "1") != "0"
TABLE = "gpt_programs"
loaded: set[tuple] = set()  # keys of the kernels this process read from disk instead of compiling


def _machine() -> str:
    """tinygrad, our code-generation pass and the CPU: what else a compiled kernel depends on."""
    cpu = platform.machine()
    try:
        cpu = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{version('tinygrad')}|{cpu}|{Path(wide_loads.__file__).read_bytes().hex()}"


_MACHINE = hashlib.sha256(_machine().encode()).hexdigest()


def _disk_key(key: tuple) -> str:
    ast_key, renderer, *rest = key
    text = f"{ast_key.hex()}|{renderer.__module__}.{renderer.__qualname__}|{rest}|{wide_loads.ENABLED}|{_MACHINE}"
    return hashlib.sha256(text.encode()).hexdigest()


def uncompiled(linear: UOp) -> dict[tuple, tuple[UOp, Renderer]]:
    """The kernels of `linear` still to compile, as tinygrad's compile-cache key -> (kernel AST, renderer)."""
    todo = {}
    for call in linear.toposort():
        if call.op is Ops.CALL and (found := realize._get_call_to_compile(call)) is not None:
            if (key := to_program_key(*found)) not in to_program_cache:
                todo[key] = found
    return todo


def load(todo: dict[tuple, tuple[UOp, Renderer]]) -> dict[tuple, tuple[UOp, Renderer]]:
    """Put each kernel of `todo` (as `uncompiled` gives it) found on disk into tinygrad's in-memory
    cache, where its compile then finds it; returns the rest, still to compile (all of `todo` when off)."""
    if not ENABLED:
        return todo
    missing = {}
    for key, found in todo.items():
        program = diskcache_get(TABLE, _disk_key(key))
        if program is None:
            missing[key] = found
        else:
            to_program_cache[key] = program
            loaded.add(key)
    return missing


def save(keys: Iterable[tuple]) -> None:
    """Write the compiled kernels of `keys` (those `load` left to compile) to disk."""
    if not ENABLED:
        return
    for key in keys:
        if (program := to_program_cache.get(key)) is not None:
            diskcache_put(TABLE, _disk_key(key), program)
