"""Where a tinygrad step spends its time, per kernel group: `python -m benchmarks.profile_tinygrad`.

For a training step and a cached decode step of one configuration, this times the whole step
(median of several, after tinygrad has compiled and captured its JIT), then replays one more step
with every kernel timed on its own (tinygrad's jitted calls run with `wait`, as its DEBUG=2 does)
and sorts the kernels into groups by `benchmarks.kernel_groups`. The step's wall time minus the
kernels' time is host overhead: Python, scheduling the JIT's calls, copying inputs and the result.

On a CPU kernels run synchronously in the calling thread, so a kernel's time is its real cost.
Writes profile-<config>.json and .md to benchmarks/results/ (or --out).
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

import numpy as np

from backends.tinygrad.kernel_timer import kernel_timer
from benchmarks.common import Progress, result_of, write_results
from benchmarks.kernel_groups import Kernel, classify, summarize
from core.model.config import GPTConfig, TrainConfig

RESULTS = Path(__file__).resolve().parent / "results"
# nanoGPT's CPU "baby GPT" (character level), the README's default run and the reference configuration.
CONFIGS = {
    "baby": (dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128), 12),
    "default": (dict(vocab_size=8192, block_size=64, n_layer=2, n_head=4, n_embd=64), 16),  # the README's first run
    "reference": (dict(vocab_size=8192, block_size=256, n_layer=4, n_head=4, n_embd=256), 16),
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def kernels_of(calls: list) -> list[Kernel]:
    """Kernel records (name, FLOPs, element counts) of recorded PROGRAM calls; copies are left out."""
    from tinygrad.engine.realize import estimate_uop, get_call_arg_uops
    from tinygrad.uop.ops import Ops, sym_infer

    kernels = []
    for call, seconds, var_vals in calls:
        ast = call.src[0]
        if ast.op is not Ops.PROGRAM:
            continue
        args = get_call_arg_uops(call)
        bufs = [args[g] for g in ast.arg.globals]
        numels = tuple(int(sym_infer(b.shape[0], var_vals)) if b.shape else 1 for b in bufs)
        out = numels[ast.arg.outs[0]] if ast.arg.outs else 0
        flops = int(sym_infer(estimate_uop(call).ops, var_vals))
        kernels.append(Kernel(ANSI.sub("", ast.arg.name), flops, out, numels, seconds))
    return kernels


def profile(step, repeats: int) -> dict:
    """Median wall seconds of `step` (already warm), then one step with every kernel timed."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    with kernel_timer() as calls:
        step()
    return {"step_s": statistics.median(times), "times_s": times, "kernels": kernels_of(calls)}


def report(section: str, found: dict, config: GPTConfig, batch: int, seq: int, keys: int) -> dict:
    kernels = found["kernels"]
    groups = classify(kernels, config, batch, seq, keys)
    kernel_s = sum(k.seconds for k in kernels)
    top = sorted(zip(kernels, groups), key=lambda kg: -kg[0].seconds)[:12]
    return {
        "section": section,
        "batch": batch,
        "step_ms": round(1e3 * found["step_s"], 2),
        "times_ms": [round(1e3 * t, 2) for t in found["times_s"]],
        "kernel_count": len(kernels),
        "kernel_ms": round(1e3 * kernel_s, 2),
        "host_ms": round(1e3 * (found["step_s"] - kernel_s), 2),
        "gflops": round(sum(k.flops for k in kernels) / kernel_s / 1e9, 2) if kernel_s else None,
        "groups": summarize(kernels, groups),
        "top": [
            {"name": k.name, "group": g, "ms": round(1e3 * k.seconds, 3), "gflops": round(k.flops / k.seconds / 1e9, 2)}
            for k, g in top
            if k.seconds
        ],
    }


def run(config_name: str, decode_batches: list[int], repeats: int, log) -> list[dict]:
    from backends import get_backend
    from core.model.params import init_params

    fields, batch = CONFIGS[config_name]
    config = GPTConfig(**fields)
    model = get_backend("tinygrad").build(config, init_params(config, seed=0), TrainConfig(batch_size=batch))
    rng = np.random.default_rng(0)
    data = rng.integers(0, config.vocab_size, (batch, config.block_size + 1))
    x, y = data[:, :-1], data[:, 1:]
    log(f"training step, batch {batch} x {config.block_size}")
    for _ in range(3):  # call 0 compiles, call 1 captures the JIT
        model.train_step(x, y, 1e-4)
    sections = [
        report(
            "training",
            profile(lambda: model.train_step(x, y, 1e-4), repeats),
            config,
            batch,
            config.block_size,
            config.block_size,
        )
    ]
    prompt = config.block_size // 8
    for b in decode_batches:
        log(f"decode step, batch {b}")
        tokens = rng.integers(0, config.vocab_size, (b, prompt))
        model.prefill(tokens)
        step_tokens = tokens[:, -1:]

        def step(tokens=tokens, step_tokens=step_tokens):
            if model.cache.pos >= config.block_size:
                model.prefill(tokens)
            model.decode(step_tokens)

        for _ in range(3):
            step()
        keys = model.cache.pos + 1
        sections.append(report("decode", profile(step, repeats), config, b, 1, keys))
    return sections


def markdown(result: dict) -> str:
    run_info, lines = result["run"], []
    lines.append(f"# tinygrad kernel profile: `{result['config_name']}`\n")
    lines.append(
        f"`{run_info['command']}` on {result['machine']['cpu']} ({result['machine']['cpus']} CPUs), "
        f"{run_info['date']}, tinygrad {result['versions'].get('tinygrad')}, commit {result['machine']['commit']}. "
        f"Settings: {result['settings']}. Load average {run_info['load_average']}.\n"
    )
    for s in result["sections"]:
        lines.append(f"## {s['section']} step, batch {s['batch']}\n")
        lines.append(
            f"{s['step_ms']} ms a step (median), {s['kernel_count']} kernels taking {s['kernel_ms']} ms "
            f"({s['gflops']} GFLOP/s), host overhead {s['host_ms']} ms.\n"
        )
        lines += ["| group | kernels | ms | share | GFLOP/s |", "| --- | ---: | ---: | ---: | ---: |"]
        lines += [
            f"| {g['group']} | {g['kernels']} | {g['ms']} | {100 * g['share']:.1f}% | {g['gflops']} |"
            for g in s["groups"]
        ]
        lines += ["", "Slowest kernels:", "", "| kernel | group | ms | GFLOP/s |", "| --- | --- | ---: | ---: |"]
        lines += [f"| `{k['name']}` | {k['group']} | {k['ms']} | {k['gflops']} |" for k in s["top"]]
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_tinygrad", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", choices=CONFIGS, default="reference", help="baby (nanoGPT's CPU recipe) or reference"
    )
    parser.add_argument(
        "--decode-batches", type=int, nargs="*", default=[1, 8], help="decode batch sizes (default 1 8)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed steps for the median (default 5)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args(argv)
    if args.repeats < 1 or any(b < 1 for b in args.decode_batches):
        parser.error("--repeats and --decode-batches take positive integers")
    log = Progress()

    sections = run(args.config, args.decode_batches, args.repeats, log)
    from tinygrad.helpers import BEAM, NUM_CPU_THREADS

    from backends.tinygrad import fusion, threads

    settings = {
        "fast": fusion.FAST,
        "parallel_threads": threads.enabled(),
        "NUM_CPU_THREADS": NUM_CPU_THREADS.value,
        "BEAM": BEAM.value,
    }
    result = result_of(
        "benchmarks.profile_tinygrad",
        argv,
        log,
        config_name=args.config,
        config=CONFIGS[args.config][0],
        settings=settings,
        sections=sections,
    )
    write_results(args.out / f"profile-{args.config}", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
