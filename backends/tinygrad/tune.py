"""Tuned kernels: BEAM search for this run's kernels within a time budget, kept on disk for every later run.

tinygrad's BEAM search times many variants of a kernel (tile sizes, unrolling, threads) and keeps
the fastest; on this CPU it makes a 1024^3 matmul about 4x faster than the default heuristics. But
it only runs when BEAM is set, searches every kernel it meets (minutes for one training step), and
a later run without BEAM ignores what it found. So:

- `tune(steps, seconds)` runs the given steps once to collect their kernels, times one more run of
  them to rank the kernels by the time they take, then BEAM-searches them, slowest first, until
  the budget is spent (a progress bar shows which). Each result goes to tinygrad's on-disk cache
  (its sqlite CACHEDB), table `gpt_tuned_opts`, keyed by the kernel's AST, renderer and threads.
- `install()` (done by the backend) makes every compile look its kernels up in that table first:
  a kernel that was tuned gets its tuned options, at no search cost; the rest compile as before.
  `found()` says how many of the kernels compiled so far were tuned, for the one line that
  training and generation print. `GPT_TINYGRAD_TUNED=0` turns the lookup off.
- `tune_run(config, batch_size, seconds)` is the `train --tune SECONDS` step: a fresh model of the
  run's shapes, its training, evaluation and decode steps compiled, then `tune` on them.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import replace

import tinygrad.engine.realize as realize
from tinygrad.codegen import to_program, to_program_cache, to_program_key
from tinygrad.helpers import NUM_CPU_THREADS, diskcache_get, diskcache_put, tqdm
from tinygrad.uop.ops import Ops, UOp

from backends.tinygrad import gemm, matvec, one_clang, program_cache
from backends.tinygrad.kernel_timer import kernel_timer

TABLE = "gpt_tuned_opts"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the colour codes in kernel names
ENABLED = os.environ.get("GPT_TINYGRAD_TUNED", "1") != "0"
_compile = realize.lower_and_compile
_seen: dict[bytes, tuple[UOp, object]] = {}  # kernel AST key -> (AST, renderer) of every kernel compiled here
_programs: dict[UOp, bytes] = {}  # compiled PROGRAM -> its kernel's AST key
_tuned: set[bytes] = set()  # keys of the kernels compiled with tuned options


def _key(ast: UOp, renderer) -> dict:
    return {
        "ast": ast.key,
        "renderer": type(renderer).__name__,
        "device": renderer.target.device,
        "threads": NUM_CPU_THREADS.value,
    }


def _kernels(linear: UOp):
    """(call, AST, renderer) of each CALL in `linear` that still needs compiling."""
    for call in linear.toposort():
        if call.op is Ops.CALL and (found := realize._get_call_to_compile(call)) is not None:
            ast, renderer = found
            if ast.op is Ops.SINK and ast.tag is None and ast.arg is not None:
                yield call, ast, renderer


def _lower_and_compile(linear: UOp) -> UOp:
    """tinygrad's lower_and_compile, with tuned options put into each kernel that has them (where none
    were tuned, matvec.py's or gemm.py's), and kernels an earlier run compiled read from disk
    (program_cache.py) instead of compiled again."""
    kernels, swaps, calls = list(_kernels(linear)), {}, {}
    for call, ast, renderer in kernels:
        _seen.setdefault(ast.key, (ast, renderer))
        if ast.arg.opts_to_apply is None and ast.arg.beam == 0:
            opts = diskcache_get(TABLE, _key(ast, renderer)) if ENABLED else None
            if opts is None:  # not tuned: our options for a matrix-vector or matrix-matrix product, if it is one
                opts = matvec.opts_for(ast, renderer) or gemm.opts_for(ast, renderer)
            else:
                _tuned.add(ast.key)
            if opts is not None:
                swaps[ast] = ast.replace(arg=replace(ast.arg, opts_to_apply=tuple(opts)))
                # The CALL itself is replaced: `substitute` does not look inside a CALL's kernel.
                outer = call.src[0]  # the kernel, or a wrapper holding it first (as _get_call_to_compile reads it)
                kernel = swaps[ast] if outer is ast else outer.replace(src=(swaps[ast], *outer.src[1:]))
                calls[call] = call.replace(src=(kernel, *call.src[1:]))
    linear = linear.substitute(calls) if calls else linear
    # Kernels compiled by an earlier run are read from disk instead; the rest by a few clang runs, not one a kernel.
    to_compile = program_cache.load(program_cache.uncompiled(linear))
    one_clang.precompile(to_compile)
    compiled = _compile(linear)
    program_cache.save(to_compile)
    for _, ast, renderer in kernels:  # remember which kernel each program came from, for `rank`
        program = to_program_cache.get(to_program_key(swaps.get(ast, ast), renderer))
        if program is not None:
            _programs[program] = ast.key
    return compiled


def install() -> None:
    """Look tuned options up whenever tinygrad compiles (idempotent)."""
    realize.lower_and_compile = _lower_and_compile


def found() -> tuple[int, int]:
    """(kernels compiled with tuned options, kernels compiled) in this process so far."""
    return len(_tuned), len(_seen)


def summary() -> str:
    tuned, total = found()
    mine = len(matvec.chosen) + len(gemm.chosen)
    ours = f", {mine} with our own options" if mine else ""
    if program_cache.loaded:
        ours += f", {len(program_cache.loaded)} compiled by an earlier run"
    if tuned:
        return f"tinygrad: {tuned} of {total} kernels use tuned options from the disk cache{ours}"
    return f"tinygrad: no tuned kernels for these shapes ({total} kernels{ours}; `tune` searches them)"


def rank(step: Callable[[], object]) -> list[tuple[bytes, float]]:
    """Kernel AST keys of one run of `step` (already compiled), by the seconds they took, slowest first."""
    seconds: dict[bytes, float] = {}
    with kernel_timer() as calls:
        step()
    for call, took, _ in calls:
        if (key := _programs.get(call.src[0])) is not None:
            seconds[key] = seconds.get(key, 0.0) + took
    return sorted(seconds.items(), key=lambda kv: -kv[1])


def tune(steps: list[Callable[[], object]], seconds: float, beam: int = 2, log=print) -> dict:
    """BEAM-search the kernels of `steps` (each warm: already run twice) slowest first, for at most about
    `seconds` (a search under way is finished). Returns what was searched and found."""
    ranked: list[tuple[bytes, float]] = []
    for step in steps:
        ranked += rank(step)
    order = sorted({k: sum(t for k2, t in ranked if k2 == k) for k, _ in ranked}.items(), key=lambda kv: -kv[1])
    total = sum(t for _, t in order) or 1.0
    started, done = time.perf_counter(), []
    todo = [(k, t) for k, t in order if diskcache_get(TABLE, _key(*_seen[k])) is None]
    log(
        f"{len(order)} kernels, {len(order) - len(todo)} tuned before; searching the rest, slowest first, "
        f"for {seconds:.0f} s"
    )
    bar = tqdm(todo, desc="BEAM")
    for key, took in bar:
        if time.perf_counter() - started >= seconds:
            break
        ast, renderer = _seen[key]
        program = to_program(ast.replace(arg=replace(ast.arg, beam=beam)), renderer)
        opts = program.src[0].arg.applied_opts
        diskcache_put(TABLE, _key(ast, renderer), tuple(opts))
        done.append(
            {"kernel": ANSI.sub("", program.arg.name), "share": round(took / total, 4), "opts": [str(o) for o in opts]}
        )
        bar.set_description(f"BEAM {time.perf_counter() - started:.0f}/{seconds:.0f} s")
    covered = sum(t for k, t in order if diskcache_get(TABLE, _key(*_seen[k])) is not None) / total
    return {
        "kernels": len(order),
        "searched": len(done),
        "seconds": round(time.perf_counter() - started, 1),
        "time_share_tuned": round(covered, 4),
        "results": done,
    }


def steps_of(config, batch: int) -> list[Callable[[], object]]:
    """The warm training, evaluation and batch-1 decode steps of a fresh model of `config` (a GPTConfig)."""
    import numpy as np

    from backends.tinygrad.backend import TinygradBackend
    from core.model.config import TrainConfig
    from core.model.params import init_params

    model = TinygradBackend().build(config, init_params(config, seed=0), TrainConfig(batch_size=batch))
    rng = np.random.default_rng(0)
    data = rng.integers(0, config.vocab_size, (batch, config.block_size + 1))
    prompt = rng.integers(0, config.vocab_size, (1, max(1, config.block_size // 8)))

    def decode():
        if model.cache is None or model.cache.pos >= config.block_size:
            model.prefill(prompt)
        model.decode(prompt[:, -1:])

    steps = [lambda: model.train_step(data[:, :-1], data[:, 1:], 1e-4), lambda: model.logits(data[:, :-1]), decode]
    for step in steps:
        for _ in range(3):  # compile, capture, replay
            step()
    return steps


def run_shapes(model_flags: dict, train_flags: dict, preset: str | None):
    """(GPTConfig, batch size) of the run `train` would start with these flags (core/train/commands.py sizes
    it so: the preset, the flags over it, a BPE vocabulary of --vocab-size or 8192)."""
    from core.model.config import GPTConfig
    from core.train.commands import DEFAULT_PRESET, DEFAULT_TRAIN, RUN_PRESETS

    preset = preset or DEFAULT_PRESET
    if preset not in RUN_PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(RUN_PRESETS)}")
    fields = {**RUN_PRESETS[preset], **model_flags, "vocab_size": model_flags.get("vocab_size") or 8192}
    batch = train_flags.get("batch_size") or (DEFAULT_TRAIN["batch_size"] if preset == DEFAULT_PRESET else None)
    if batch is None:
        from core.model.config import TrainConfig

        batch = TrainConfig().batch_size
    return GPTConfig(**fields), batch


def tune_run(config, batch: int, seconds: float, beam: int = 2, log=print) -> dict:
    """BEAM-search the kernels of a run with `config` and training batch `batch` for about `seconds`."""
    if seconds <= 0 or beam < 1:
        raise ValueError(f"a tuning budget needs seconds > 0 and beam >= 1 (got {seconds}, {beam})")
    log(
        f"tune: compiling this run's training, evaluation and decode steps ({config.n_layer} layers, "
        f"{config.n_embd} wide, vocab {config.vocab_size}, block {config.block_size}, batch {batch})"
    )
    found = tune(steps_of(config, batch), seconds, beam, log=log)
    log(
        f"tune: searched {found['searched']} of {found['kernels']} kernels in {found['seconds']} s; tuned kernels "
        f"take {100 * found['time_share_tuned']:.0f}% of these steps' kernel time; kept in tinygrad's disk cache"
    )
    return found
