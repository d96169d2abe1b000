"""The README's first command, timed as a user runs it, beside candidate settings for it.

    python -m benchmarks.default_run                      # every candidate below (each a few minutes here)
    python -m benchmarks.default_run --only default "300 steps"

Each candidate is `python train_next_word_prediction.py --backend tinygrad` plus its flags, run in a
subprocess from the repository root with the token cache warm (prepared once before the first is
timed) and timed by the wall clock: interpreter start, data loading, tinygrad's compiling, every
evaluation, sample and checkpoint included. Each row starts with an empty tinygrad kernel cache
(`CACHEDB` in a fresh folder), so every row compiles all its kernels as a first run does. Then,
untimed, `evaluate --backend torch` scores its best checkpoint on the first 100,000 validation
tokens, for bits per byte (comparable across settings). The load average is sampled every 5 s while
each trains, since the machine is shared: wall times carry that load.
Writes benchmarks/results/default-run.json and .md (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import ROOT, Progress, machine, package_versions, write_results

CLI = ["train_next_word_prediction.py", "--backend", "tinygrad"]  # the README's first command
# The default until this benchmark chose 600 steps of 8 (configs/default.toml before), spelled out as flags
# so that it stays measurable after the default changed.
PREVIOUS = ["--n-layer", "2", "--n-head", "4", "--n-embd", "64", "--block-size", "64", "--steps", "300",
            "--batch-size", "16", "--lr", "3e-3", "--min-lr", "3e-4", "--warmup-steps", "30",
            "--eval-every", "100", "--eval-batches", "8"]  # fmt: skip
CANDIDATES: dict[str, list[str]] = {
    "default": [],  # the command as the README prints it: whatever the default is at this commit
    "300 steps": PREVIOUS,
    "300 steps, lr 6e-3": [*PREVIOUS, "--lr", "6e-3", "--min-lr", "6e-4"],
    "300 steps, lr 1e-2": [*PREVIOUS, "--lr", "1e-2", "--min-lr", "1e-3"],
    "450 steps of 8": [*PREVIOUS, "--steps", "450", "--batch-size", "8", "--warmup-steps", "45"],
    "600 steps of 8": [*PREVIOUS, "--steps", "600", "--batch-size", "8", "--warmup-steps", "60"],  # the new default
    "750 steps of 8": [*PREVIOUS, "--steps", "750", "--batch-size", "8", "--warmup-steps", "75"],
    "1000 steps of 4": [*PREVIOUS, "--steps", "1000", "--batch-size", "4", "--warmup-steps", "100"],
    "vocabulary 4096, 400 steps": [*PREVIOUS, "--vocab-size", "4096", "--steps", "400", "--warmup-steps", "40"],
}
# Round 3 (the default ran in 75 s on a quiet machine with the matmul options, default-run-quiet.md): longer
# runs for about 3 minutes, on the 600-steps-of-8 default spelled out so they keep their meaning if it changes.
_600 = CANDIDATES["600 steps of 8"]
CANDIDATES |= {
    "1500 steps of 8": [*_600, "--steps", "1500", "--warmup-steps", "150", "--eval-every", "250"],
    "750 steps of 16": [*_600, "--steps", "750", "--batch-size", "16", "--warmup-steps", "75", "--eval-every", "250"],
    "128 dims, 800 steps of 8": [*_600, "--n-embd", "128", "--steps", "800", "--warmup-steps", "80",
                                 "--eval-every", "200"],
}
EVAL_TOKENS = 100_000


class LoadSampler(threading.Thread):
    """The 1-minute load average every `every` seconds until stopped."""

    def __init__(self, every: float = 5.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.done = every, [os.getloadavg()[0]], threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def figures(self) -> dict:
        self.done.set()
        s = self.samples
        return {"start": round(s[0], 2), "mean": round(sum(s) / len(s), 2), "max": round(max(s), 2)}


def _cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"failed: python {shlex.join(args)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def measure(name: str, flags: list[str], runs: Path, log) -> dict:
    """Train one candidate (timed), then score its best checkpoint (untimed)."""
    run_dir = runs / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    shutil.rmtree(ROOT / run_dir, ignore_errors=True)  # a fresh run each time: train refuses an existing folder
    args = [*CLI, *flags, "--out", str(run_dir)]
    log(f"{name}: python {shlex.join(args)}")
    sampler = LoadSampler()
    with tempfile.TemporaryDirectory() as kernels:  # an empty kernel cache: every row compiles as a first run does
        sampler.start()
        start = time.perf_counter()
        done = _cli(args, env={**os.environ, "CACHEDB": str(Path(kernels) / "cache.db")})
        wall = time.perf_counter() - start
    load = sampler.figures()
    records = [json.loads(line) for line in (ROOT / run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "val_loss" in r]
    config = (ROOT / run_dir / "config.toml").read_text()
    tokens_per_step = _tokens_per_step(done.stdout)
    baseline = re.search(r"vs unigram baseline ([0-9.]+)", done.stdout)
    params = re.search(r"model: ([0-9,]+) parameters", done.stdout)
    evaluation = run_dir / "evaluation"
    _cli(["train_next_word_prediction.py", "evaluate", "--backend", "torch", "--checkpoint", str(run_dir),
          "--max-tokens", str(EVAL_TOKENS), "--out", str(evaluation), "--no-progress"])  # fmt: skip
    summary = json.loads((ROOT / evaluation / "report.json").read_text())["summary"]
    row = {
        "name": name, "command": "python " + shlex.join(args), "wall_s": round(wall, 1), "load_average": load,
        "parameters": int(params.group(1).replace(",", "")) if params else None,
        "steps": records[-1]["step"], "tokens_per_step": tokens_per_step,
        # step 1's rate is over that step alone: its time is tinygrad's compiling plus one step
        "first_step_s": round(tokens_per_step / records[0]["tokens_per_second"], 1),
        "tokens_per_s_last": round(records[-1]["tokens_per_second"]),
        "final_val_loss": round(evals[-1]["val_loss"], 4), "best_val_loss": round(min(r["val_loss"] for r in evals), 4),
        "unigram_baseline": float(baseline.group(1)) if baseline else None,
        "val_bits_per_byte": round(summary["bits_per_byte"], 4), "val_perplexity": round(summary["perplexity"], 1),
        "evaluated_tokens": summary["tokens"], "config_toml": config,
    }  # fmt: skip
    log(f"{name}: {row['wall_s']} s wall (load {load['mean']} mean), val loss {row['final_val_loss']}, "
        f"{row['val_bits_per_byte']} bits per byte")  # fmt: skip
    return row


def _tokens_per_step(stdout: str) -> int:
    found = re.search(r"= ([0-9,]+) tokens per step", stdout)
    if not found:
        raise SystemExit("the training output no longer says its tokens per step: update benchmarks/default_run.py")
    return int(found.group(1).replace(",", ""))


def warm_token_cache(flags: list[str]) -> None:
    """Tokenize the built-in corpus (cached under .cache/data) as a user's second run finds it."""
    from core.data.dataset import prepare_dataset

    vocab = int(flags[flags.index("--vocab-size") + 1]) if "--vocab-size" in flags else 8192
    prepare_dataset(None, "bpe", vocab)


def markdown(result: dict) -> str:
    run, m = result["run"], result["machine"]
    lines = [
        "# The README's default run and candidates for it",
        "",
        f"`{run['command']}`, {run['date']}, commit {m['commit']}, {m['cpu']} ({m['cpus']} CPUs), "
        f"{', '.join(f'{k} {v}' for k, v in result['versions'].items())}. Each row is one run of "
        "`train_next_word_prediction.py --backend tinygrad` with its flags, timed by the wall clock from "
        "the interpreter's start to its exit (data loading with a warm token cache, compiling, evaluations, "
        "samples and checkpoints included; each with an empty tinygrad kernel cache, so it compiles every kernel as a "
        "first run does), one after another in this run. The machine is shared: the load "
        "average (1 minute, sampled every 5 s while each row trained) is beside each time. Bits per byte: "
        f"`evaluate --backend torch` on the best checkpoint, first {EVAL_TOKENS:,} validation tokens.",
        "",
        "| candidate | parameters | steps x tokens | wall s | load mean (max) | first step s | tokens/s at the end "
        "| final val loss | unigram baseline | val bits per byte | val perplexity |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['name']} | {r['parameters']:,} | {r['steps']} x {r['tokens_per_step']:,} | {r['wall_s']} | "
            f"{r['load_average']['mean']} ({r['load_average']['max']}) | {r['first_step_s']} | "
            f"{r['tokens_per_s_last']:,} | {r['final_val_loss']} | {r['unigram_baseline']} | "
            f"{r['val_bits_per_byte']} | {r['val_perplexity']} |"
        )
    lines += ["", "Commands:", "", *[f"- {r['name']}: `{r['command']}`" for r in result["rows"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="these candidates only")
    parser.add_argument("--runs", default="runs/default-run", help="folder of the candidates' run folders")
    parser.add_argument("--out", default="benchmarks/results/default-run", help="results path without suffix")
    args = parser.parse_args(argv)
    progress = Progress()
    for name in args.only or CANDIDATES:
        warm_token_cache(CANDIDATES[name])
    progress("token cache warm")
    rows = [measure(name, CANDIDATES[name], Path(args.runs), progress) for name in args.only or CANDIDATES]
    result = {"run": progress.record("benchmarks.default_run", argv), "machine": machine(),
              "versions": package_versions(), "rows": rows}  # fmt: skip
    write_results(ROOT / args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
