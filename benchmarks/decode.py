"""Greedy generation speed with and without the KV cache, on one backend.

    python benchmarks/decode.py --backend tinygrad --batch 1 8 --repeats 3

Builds a model of a preset (random weights from `core.spec.init_params`), runs one warm-up
generation per setting (tinygrad compiles its kernels and captures the decode JIT there; its time is
reported separately), then times `--repeats` generations and reports the median: new tokens per
second (all rows together), milliseconds per step, and the time to the first new token (the
prefill). `core.generate.generate` returns numpy logits every step, so each step is synchronized.

With the cache, each step feeds one token; without it, each step runs the full forward pass over the
whole sequence so far, as nanoGPT's `generate` does. With the defaults (32 + 224 = 256 tokens =
block_size of `tiny`) the window never has to be cropped. Results go to
benchmarks/results/decode-<backend>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends import BACKENDS, get_backend, resolve_name  # noqa: E402
from core.config import PRESETS, preset  # noqa: E402
from core.generate import generate  # noqa: E402
from core.spec import count_params, init_params  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default=None, help="default: GPT_BACKEND or tinygrad")
    parser.add_argument("--device", default=None, help="device in the backend's own terms (default: its best)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--vocab", type=int, default=8192, help="vocabulary size (ignored by the gpt2 preset)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes to time")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per setting (median reported)")
    parser.add_argument("--modes", nargs="+", choices=["cache", "no-cache"], default=["cache", "no-cache"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads: sets OMP_NUM_THREADS (torch) and NUM_CPU_THREADS (tinygrad)")
    args = parser.parse_args(argv)
    for name in ("vocab", "prompt_len", "new_tokens", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} is invalid: use a positive integer")
    if min(args.batch) < 1:
        parser.error(f"--batch {args.batch} is invalid: use positive integers")
    return args


def time_generation(model, prompts: np.ndarray, new_tokens: int, use_cache: bool) -> tuple[float, float]:
    """Seconds for one greedy generation, and seconds until its first new token."""
    first: list[float] = []
    start = time.perf_counter()
    out = generate(
        model, prompts, new_tokens, use_cache=use_cache,
        on_token=lambda row, token: first.append(time.perf_counter()) if not first else None,
    )
    total = time.perf_counter() - start
    assert all(len(row) == new_tokens for row in out)
    return total, first[0] - start


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:  # read when the framework loads, which happens in get_backend below
        os.environ["OMP_NUM_THREADS"] = os.environ["NUM_CPU_THREADS"] = str(args.threads)
    name = resolve_name(args.backend)
    backend = get_backend(name, args.device)
    config = preset(args.preset, **({} if args.preset == "gpt2" else {"vocab_size": args.vocab}))
    model = backend.build(config, init_params(config, seed=args.seed))
    print(f"using {name} on {backend.device}: preset {args.preset}, {count_params(config) / 1e6:.1f}M parameters")
    if args.prompt_len + args.new_tokens > config.block_size:
        print(f"note: {args.prompt_len}+{args.new_tokens} tokens exceed block_size={config.block_size}: "
              "past it every cached step re-prefills the cropped window")
    rng = np.random.default_rng(args.seed)
    load_start = round(os.getloadavg()[0], 2)  # other work on the machine skews timings: recorded

    rows = []
    for batch in args.batch:
        prompts = rng.integers(0, config.vocab_size, (batch, args.prompt_len))
        warmups = {mode: time_generation(model, prompts, args.new_tokens, mode == "cache")[0] for mode in args.modes}
        # Repeats alternate between the modes, so a change in machine load affects both alike.
        timed: dict[str, list[tuple[float, float]]] = {mode: [] for mode in args.modes}
        for _ in range(args.repeats):
            for mode in args.modes:
                timed[mode].append(time_generation(model, prompts, args.new_tokens, mode == "cache"))
        for mode in args.modes:
            median = statistics.median(t for t, _ in timed[mode])
            row = {
                "batch": batch,
                "use_cache": mode == "cache",
                "warmup_s": round(warmups[mode], 3),
                "times_s": [round(t, 4) for t, _ in timed[mode]],
                "median_s": round(median, 4),
                "tokens_per_s": round(batch * args.new_tokens / median, 2),
                "ms_per_step": round(1000 * median / args.new_tokens, 3),
                "first_token_ms": round(1000 * statistics.median(f for _, f in timed[mode]), 2),
            }
            rows.append(row)
            print(f"batch {batch:>2} {mode:>8}: {row['tokens_per_s']:9.1f} tokens/s, "
                  f"{row['ms_per_step']:8.2f} ms/step, first token {row['first_token_ms']:.1f} ms, "
                  f"warm-up {row['warmup_s']:.1f} s")

    speedups = {}
    for batch in args.batch:
        by_mode = {r["use_cache"]: r for r in rows if r["batch"] == batch}
        if len(by_mode) == 2:
            speedups[str(batch)] = round(by_mode[True]["tokens_per_s"] / by_mode[False]["tokens_per_s"], 2)
            print(f"batch {batch:>2}: the cache is {speedups[str(batch)]:.1f}x faster")

    result = {
        "benchmark": "decode",
        "backend": name,
        "device": backend.device,
        "preset": args.preset,
        "config": config.to_dict(),
        "params": count_params(config),
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "threads": args.threads,
        "versions": backend.versions(),
        "platform": {"python": platform.python_version(), "machine": platform.machine(),
                     "system": platform.platform(), "cpus": os.cpu_count(),
                     "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)}},
        "results": rows,
        "cache_speedup": speedups,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"decode-{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"decode-{name}.md").write_text(markdown(result))
    print(f"wrote {RESULTS / f'decode-{name}.json'} and .md")
    return 0


def markdown(result: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    threads = "" if result.get("threads") is None else f", {result['threads']} CPU thread(s)"
    lines = [
        f"# Greedy decoding: {result['backend']} on {result['device']}",
        "",
        f"Preset `{result['preset']}` ({result['params'] / 1e6:.1f}M parameters, vocab "
        f"{result['config']['vocab_size']}), prompt {result['prompt_len']} tokens, {result['new_tokens']} new "
        f"tokens, median of {result['repeats']} after one warm-up{threads}. {versions}; Python "
        f"{result['platform']['python']} on {result['platform']['system']}, {result['platform']['cpus']} CPUs "
        f"(load average {result['platform']['load_average_1m']['start']} at the start, "
        f"{result['platform']['load_average_1m']['end']} at the end).",
        "",
        "| batch | KV cache | new tokens/s | ms/step | first token ms | warm-up s |",
        "| ---: | :---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["results"]:
        lines.append(f"| {r['batch']} | {'yes' if r['use_cache'] else 'no'} | {r['tokens_per_s']:.1f} | "
                     f"{r['ms_per_step']:.2f} | {r['first_token_ms']:.1f} | {r['warmup_s']:.1f} |")
    if result["cache_speedup"]:
        speedups = ", ".join(f"batch {b}: {s:.1f}x" for b, s in result["cache_speedup"].items())
        lines += ["", f"Cache speed-up: {speedups}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
