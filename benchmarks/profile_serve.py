"""Where the time of `serve` goes between decode steps, at N concurrent streaming clients.

    python -m benchmarks.profile_serve [--backend torch] [--clients 8] [--threads N]

The reference model (random weights, as `benchmarks.serve` builds it) is served in this process, so
its parts can be timed from outside: the model's decode step, choosing the tokens (numpy sampling),
handing them to the event loop, and on the event loop turning each token into text and an SSE
chunk. The clients run in a child process (as `benchmarks.serve` runs them), so their work is not
counted here. Two phases, side by side in one run:

  worker alone   N jobs submitted straight to the batcher, no HTTP: the loop's own cost per step
  over HTTP      the same N requests streamed through the server by N clients

Per decode step: the milliseconds of each part (perf_counter) and the process's CPU time (all threads).
Results: benchmarks/results/profile-serve-<backend>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, git_commit, load_average, machine
from benchmarks.serve import level, reference_checkpoint

RESULTS = ROOT / "benchmarks" / "results"


class Meter:
    """Accumulated seconds and calls per named part; `wrap` times a method of an object in place."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, owner, name: str, part: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - start
                self.calls[part] += 1

        setattr(owner, name, timed)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def _clients(port: int, bodies: list[dict], out) -> None:
    from benchmarks.serve import summarize

    runs = level(port, len(bodies), bodies, 1, 120)
    out.put(summarize(runs, [r.get("text") for r in runs], len(bodies))["tokens_per_s"])


def profile(backend: str, clients: list[int], max_tokens: int, rounds: int, threads: list[int],
            intervals: list[float]) -> dict:
    """Every (torch threads, switch interval, clients) variant over HTTP, `rounds` times in turn; and
    the worker alone at the most clients. Returns per-variant medians of ms per step and tokens/s."""
    import sys

    from backends import get_backend
    from core.generate.sampling import SamplingConfig
    from core.serve import app as app_module
    from core.serve import batcher as batcher_module
    from core.serve.batcher import Finished, Job
    from core.serve.server import load, start_background
    from core.serve.text_stream import TextStream

    tmp = tempfile.TemporaryDirectory()
    checkpoint = reference_checkpoint(Path(tmp.name))
    served = load(get_backend(backend), str(checkpoint), slots=16)
    b, meter = served.batcher, Meter()
    meter.wrap(b, "_step", "worker: whole step")
    meter.wrap(b.model, "slot_decode", "decode step (model)")
    meter.wrap(b, "_choose_many", "choose tokens (sampling, hand-over)")
    meter.wrap(batcher_module, "sample", "  of which numpy sampling")
    meter.wrap(TextStream, "push", "event loop: tokens to text")
    meter.wrap(app_module.json, "dumps", "event loop: JSON of chunks")
    tokenizer = served.session.tokenizer
    ids = tokenizer.encode(Path(threading.__file__).read_text())
    prompts = [ids[1000 + 97 * i : 1000 + 97 * i + 32] for i in range(max(clients))]
    uv, url = start_background(served)
    port = int(url.rsplit(":", 1)[1])
    ctx = multiprocessing.get_context("spawn")

    def alone(n: int) -> float:  # the worker with no HTTP: deliver only counts; tokens/s from here
        done, begin = threading.Semaphore(0), time.perf_counter()
        for i, p in enumerate(prompts[:n]):
            b.submit(Job(p, max_tokens, SamplingConfig(0.8, 40), np.random.default_rng(i),
                         lambda ev: done.release() if isinstance(ev, Finished) else None))
        for _ in range(n):
            done.acquire()
        return n * max_tokens / (time.perf_counter() - begin)

    def http(n: int) -> float:
        bodies = [{"prompt": tokenizer.decode(p), "seed": i, "max_tokens": max_tokens, "temperature": 0.8,
                   "top_k": 40} for i, p in enumerate(prompts[:n])]
        out = ctx.Queue()
        child = ctx.Process(target=_clients, args=(port, bodies, out))
        child.start()
        rate = out.get()
        child.join()
        return rate

    variants = [(f"{t} thread{'s' if t > 1 else ''}, switch {1000 * i:g} ms", t, i) for t in threads for i in intervals]
    samples: dict[str, list[dict]] = defaultdict(list)
    default_interval = sys.getswitchinterval()
    try:
        alone(max(clients))  # warm-up
        for _ in range(rounds):
            for label, t, interval in variants:
                if backend == "torch":
                    import torch

                    torch.set_num_threads(t)
                sys.setswitchinterval(interval)
                runs = [(f"{label}, {n} clients over HTTP", http, n) for n in clients]
                runs.append((f"{label}, {max(clients)} jobs, worker alone", alone, max(clients)))
                for name, run, n in runs:
                    meter.reset()
                    steps, cpu = b.steps, time.process_time()
                    rate = run(n)
                    cpu, steps = time.process_time() - cpu, b.steps - steps
                    # (wall / steps would count the client process's start-up too: the step is timed instead)
                    row = {"tokens_per_s": round(rate, 1), "steps": steps,
                           "process_cpu_ms_per_step": round(1000 * cpu / steps, 3),
                           **{k: round(1000 * v / steps, 3) for k, v in meter.seconds.items()}}
                    samples[name].append(row)
                    print(name, json.dumps(row), flush=True)
    finally:
        sys.setswitchinterval(default_interval)
        uv.should_exit = True
        b.close()
    return {name: {k: float(np.median([row.get(k, 0.0) for row in rows])) for k in rows[0] | rows[-1]}
            for name, rows in samples.items()}


def markdown(result: dict) -> str:
    lines = [f"# Where a decode step of `serve` goes: {result['backend']}", "",
             f"`{result['command']}` on {result['machine'].get('cpu', '?')} ({result['machine'].get('cpus', '?')} "
             f"CPUs), {result['date']}, commit {result['commit']}; the reference model (random weights), "
             f"{result['max_tokens']} new tokens per request, temperature 0.8, top_k 40; {result['rounds']} rounds "
             f"of every variant in turn, medians shown. Load average {result['load_start']:.2f} at the start, "
             f"{result['load_end']:.2f} at the end (a shared machine: other jobs ran). Per decode step, ms; "
             "'switch' is Python's GIL switch interval (sys.setswitchinterval).", ""]
    phases = result["phases"]
    parts = ["tokens_per_s", "worker: whole step", "decode step (model)",
             "choose tokens (sampling, hand-over)", "  of which numpy sampling", "event loop: tokens to text",
             "event loop: JSON of chunks", "process_cpu_ms_per_step"]
    lines += ["| variant | " + " | ".join(p.strip() for p in parts) + " |", "| --- |" + " ---: |" * len(parts)]
    for name, row in phases.items():
        lines.append(f"| {name} | " + " | ".join(f"{row.get(p, 0.0):g}" for p in parts) + " |")
    lines += ["", "Ratios, 8 clients over 1 client, inside each variant (tokens/s):", ""]
    for name, row in phases.items():
        if name.endswith(", 1 clients over HTTP"):
            many = phases.get(name.replace(", 1 clients", f", {result['most']} clients"))
            if many:
                lines.append(f"- {name.removesuffix(', 1 clients over HTTP')}: "
                             f"**{many['tokens_per_s'] / row['tokens_per_s']:.2f}x**")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="torch", choices=["torch", "tinygrad"])
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="2", help="torch threads to compare, e.g. 1,2")
    parser.add_argument("--switch-ms", default="5", help="GIL switch intervals to compare, e.g. 5,0.5")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    clients = [int(c) for c in args.clients.split(",")]
    load_start = load_average()
    phases = profile(args.backend, clients, args.max_tokens, args.rounds, [int(t) for t in args.threads.split(",")],
                     [float(m) / 1000 for m in args.switch_ms.split(",")])
    result = {"command": " ".join(["python -m benchmarks.profile_serve", *argv]), "backend": args.backend,
              "max_tokens": args.max_tokens, "rounds": args.rounds, "most": max(clients),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": git_commit(),
              "machine": machine(), "load_start": load_start, "load_end": load_average(), "phases": phases}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"profile-serve-{args.backend}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
