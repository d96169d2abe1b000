"""The first training step on a cold kernel cache, before and after: `python -m benchmarks.cold_start`.

A first step compiles every kernel of the step (tinygrad's disk cache, CACHEDB, holds none yet), so
it is timed in a fresh process with an empty CACHEDB of its own, once per variant per round, the
variants taking turns (A B C, then C B A, ...) so that a shared machine's load falls on each alike. Each run
reports the step's wall time, the CPU seconds it took (the process, its compile workers and their
clang runs: the work, whatever the load), and how many kernels it compiled.

Variants: this checkout as it is; its second run (a second process on the CACHEDB the first left,
as a user's next run of the same shapes finds it), with and without program_cache.py's compiled
kernels; the same with GPT_TINYGRAD_EARLY_POOL=0 (compile_workers.py off),
with GPT_TINYGRAD_GEMM=0 (gemm.py's matmul options off, whose larger kernels take longer to compile),
GPT_TINYGRAD_WIDE_LOADS=0 (wide_loads.py off) and GPT_TINYGRAD_ONE_CLANG=0 (one_clang.py off: a clang run
a kernel);
and, with `--before DIR`, another checkout of the project (e.g. `git archive COMMIT | tar -x -C DIR`).
Writes cold-start-<config>.json and .md (or --name) to benchmarks/results/ (or --out); `--only TEXT...`
times this checkout and the variants whose names contain one of the TEXTs (more rounds in the time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, Progress, result_of, write_results
from benchmarks.profile_tinygrad import CONFIGS, RESULTS

# Run in the checkout being measured (which may predate this file), with the interpreter running this one.
CHILD = r"""
import json, multiprocessing, os, resource, sys, time
import numpy as np
from backends import get_backend
from core.model.config import GPTConfig, TrainConfig
from core.model.params import init_params
fields, batch = json.loads(sys.argv[1])
started = time.perf_counter()
config = GPTConfig(**fields)
model = get_backend("tinygrad").build(config, init_params(config, seed=0), TrainConfig(batch_size=batch))
data = np.random.default_rng(0).integers(0, config.vocab_size, (batch, config.block_size + 1))
built = time.perf_counter()
model.train_step(data[:, :-1], data[:, 1:], 1e-4)
stepped = time.perf_counter()
tick = os.sysconf("SC_CLK_TCK")
def cpu_of(pid):  # user + system seconds of a live process and of the children it has waited for
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / tick
me, gone = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = me.ru_utime + me.ru_stime + gone.ru_utime + gone.ru_stime
cpu += sum(cpu_of(p.pid) for p in multiprocessing.active_children())
from tinygrad.codegen import to_program_cache
try:  # kernels read from disk, compiled by an earlier process (absent from checkouts before program_cache.py)
    from backends.tinygrad.program_cache import loaded
except ImportError:
    loaded = ()
print(json.dumps({"build_s": built - started, "first_step_s": stepped - built, "cpu_s": cpu,
                  "kernels": len(to_program_cache) - len(loaded), "read": len(loaded)}))
"""


def first_step(source: Path, fields_batch: tuple, env: dict[str, str], processes: int = 1) -> dict:
    """The first step of the checkout at `source` in the last of `processes` fresh processes, one after
    another, sharing a CACHEDB that is empty before the first (1: a cold cache; 2: what an earlier run left)."""
    with tempfile.TemporaryDirectory() as tmp:
        run_env = {**os.environ, **env, "CACHEDB": str(Path(tmp) / "cache.db"), "PYTHONPATH": str(source)}
        for _ in range(processes):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, json.dumps(fields_batch)],
                cwd=source,
                env=run_env,
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise RuntimeError(f"the first step in {source} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    lines = [
        f"# First training step on a cold kernel cache: `{result['config_name']}`\n",
        f"`{result['run']['command']}` on {result['machine']['cpu']} ({result['machine']['cpus']} CPUs), "
        f"{result['run']['date']}, commit {result['machine']['commit']}, load average "
        f"{result['run']['load_average']}. Each run is a fresh process with an empty CACHEDB (the \"second run\" "
        "variant: the second of two processes sharing one, as a user's next run finds it); variants in "
        "turn, in reverse order every other round; medians of the rounds, and the fastest round (this "
        "machine's load only ever adds time). "
        "CPU s counts the process, its compile workers and their clang runs. "
        "Read: kernels read from disk (program_cache.py), compiled by the earlier process.\n",
        "| variant | first step s | fastest s | CPU s | kernels compiled | read | model built s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, runs in result["variants"].items():
        med = {k: statistics.median(r.get(k, 0) for r in runs) for k in runs[0]}
        fastest = min(r["first_step_s"] for r in runs)
        lines.append(
            f"| {name} | {med['first_step_s']:.1f} | {fastest:.1f} | {med['cpu_s']:.1f} | {med['kernels']:.0f} | "
            f"{med.get('read', 0):.0f} | {med['build_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=CONFIGS, default="default", help="default (the README's first run), ...")
    parser.add_argument("--before", type=Path, help="another checkout of the project, timed beside this one")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each variant (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument("--name", help="results file name, without .md/.json (default cold-start-CONFIG)")
    parser.add_argument("--only", nargs="+", metavar="TEXT",
                        help="time only this checkout and the variants whose names contain TEXT (ONE_CLANG before)")
    args = parser.parse_args(argv)
    if args.before is not None and not (args.before / "backends" / "tinygrad").is_dir():
        parser.error(f"--before {args.before} is not a checkout of this project (no backends/tinygrad in it)")
    variants = {
        "this checkout": (ROOT, {}, 1),
        "this checkout, second run": (ROOT, {}, 2),
        "this checkout, second run, GPT_TINYGRAD_PROGRAM_CACHE=0": (ROOT, {"GPT_TINYGRAD_PROGRAM_CACHE": "0"}, 2),
        "this checkout, GPT_TINYGRAD_EARLY_POOL=0": (ROOT, {"GPT_TINYGRAD_EARLY_POOL": "0"}, 1),
        "this checkout, GPT_TINYGRAD_GEMM=0": (ROOT, {"GPT_TINYGRAD_GEMM": "0"}, 1),
        "this checkout, GPT_TINYGRAD_WIDE_LOADS=0": (ROOT, {"GPT_TINYGRAD_WIDE_LOADS": "0"}, 1),
        "this checkout, GPT_TINYGRAD_ONE_CLANG=0": (ROOT, {"GPT_TINYGRAD_ONE_CLANG": "0"}, 1),
    }
    if args.before is not None:
        variants[f"before ({args.before.name})"] = (args.before.resolve(), {}, 1)
    if args.only:
        chosen = [name for name in variants if name == "this checkout" or any(o in name for o in args.only)]
        variants = {name: variants[name] for name in chosen}
    log = Progress()
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        order = list(variants.items())
        for name, (source, env, processes) in order if round_ % 2 == 0 else order[::-1]:  # no variant always first
            runs[name].append(first_step(source, CONFIGS[args.config], env, processes))
            log(f"round {round_ + 1}, {name}: first step {runs[name][-1]['first_step_s']:.1f} s")
    result = result_of(
        "benchmarks.cold_start", argv, log, config_name=args.config, config=CONFIGS[args.config][0], variants=runs
    )
    write_results(args.out / (args.name or f"cold-start-{args.config}"), result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
