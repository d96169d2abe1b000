"""nanoGPT's CPU "baby GPT" recipe and ours, side by side: `python -m benchmarks.nanogpt --nanogpt DIR`.

nanoGPT's README trains a small character-level model on a CPU (`config/train_shakespeare_char.py`
with --device=cpu --compile=False --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
--n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0). This runs that recipe from a
nanoGPT checkout (DIR, never copied into this repository) and then our command line with the same
settings, once per backend, one after another on the same text, and records each run's wall time
(process start to exit, data preparation and compiling included) and final validation loss.
tinygrad runs twice, on a kernel cache (CACHEDB) of its own that is empty before the first run: the
first compiles every kernel, the second reads them from disk as a user's next run does.
With --rounds N the whole sequence runs N times, nanoGPT first in one round and last in the next
(tinygrad's two runs stay together, on a new empty cache each round), and the report gives each run's
median and its wall time over nanoGPT's in the same round: on a shared machine whose load drifts, a
single sequence puts the drift on whichever run comes last.

The text: --text FILE (default: the first --mb MB of the Python standard library's source, which
our default corpus also reads). nanoGPT's `data/shakespeare_char/prepare.py` imports `requests`
to download its text; this writes the same files it would (train.bin and val.bin, uint16 character
ids, the first 90% / last 10%; meta.pkl) instead. Our CLI splits one document the same way.

Equal work: nanoGPT evaluates every 250 steps on 200 batches of each split (train and val); ours
evaluates the validation split only, so it gets 400 batches (--eval-batches 400) at the same
interval, and writes checkpoints and a sample at each evaluation, which nanoGPT does not sample.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, Progress, machine, package_versions, write_results
from benchmarks.profile_tinygrad import RESULTS

RECIPE = dict(
    block_size=64, batch_size=12, n_layer=4, n_head=4, n_embd=128, max_iters=2000, lr_decay_iters=2000, dropout=0.0
)
VAL_LOSS = re.compile(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)")
FROM_EARLIER_RUN = re.compile(r"(\d+) compiled by an earlier run")  # tinygrad's one line per kind of step


def default_text(mb: float) -> str:
    import sysconfig

    chunks, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        chunks.append(path.read_text(encoding="utf-8", errors="replace"))
        size += len(chunks[-1])
        if size >= mb * 1e6:
            break
    return "".join(chunks)[: int(mb * 1e6)]


def prepare_nanogpt(text: str, data_dir: Path) -> None:
    """nanoGPT's shakespeare_char/prepare.py output for `text`: character ids, 90/10 split, meta.pkl."""
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    cut = int(len(ids) * 0.9)
    data_dir.mkdir(parents=True, exist_ok=True)
    ids[:cut].tofile(data_dir / "train.bin")
    ids[cut:].tofile(data_dir / "val.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    (data_dir / "meta.pkl").write_bytes(pickle.dumps(meta))


def timed(command: list[str], cwd: Path, log_file: Path, env: dict[str, str] | None = None) -> dict:
    start = time.perf_counter()
    with log_file.open("w") as out:
        proc = subprocess.run(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
        )
    seconds = time.perf_counter() - start
    found = VAL_LOSS.findall(log_file.read_text())
    return {
        "command": shlex.join(command),
        "wall_s": round(seconds, 1),
        "returncode": proc.returncode,
        "final_step": int(found[-1][0]) if found else None,
        # Each of tinygrad's one-line reports gives the running total so far: the last one is the run's.
        "kernels_from_earlier_run": max((int(n) for n in FROM_EARLIER_RUN.findall(log_file.read_text())), default=0),
        "val_loss": float(found[-1][1]) if found else None,
    }


def run(nanogpt: Path, text: str, backends: list[str], work: Path, log, rounds: int = 1) -> dict:
    """Run nanoGPT from a copy of its code in `work` (its checkout stays untouched) and ours, `rounds`
    times, in reverse order every other round; each run's results, a list with one entry a round."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "input.txt").write_text(text)
    copy = work / "nanogpt"
    shutil.copytree(nanogpt / "config", copy / "config")
    for name in ("train.py", "model.py", "configurator.py"):
        shutil.copy(nanogpt / name, copy / name)
    prepare_nanogpt(text, copy / "data" / "bench_char")
    flags = [f"--{k}={v}" for k, v in RECIPE.items()]
    nano_cmd = [
        sys.executable,
        "train.py",
        "config/train_shakespeare_char.py",
        "--dataset=bench_char",
        "--device=cpu",
        "--compile=False",
        "--always_save_checkpoint=False",
        *flags,
    ]
    # Each unit runs as one piece: tinygrad's second run needs the cache its first run left.
    units = [[("nanogpt", nano_cmd, copy, False)]]
    for backend in backends:
        ours = [
            sys.executable,
            str(ROOT / "train_next_word_prediction.py"),
            "train",
            "--backend",
            backend,
            "--data",
            str(work / "input.txt"),
            "--tokenizer",
            "char",
            "--block-size",
            "64",
            "--batch-size",
            "12",
            "--n-layer",
            "4",
            "--n-head",
            "4",
            "--n-embd",
            "128",
            "--dropout",
            "0",
            "--steps",
            "2000",
            "--lr",
            "1e-3",
            "--min-lr",
            "1e-4",
            "--warmup-steps",
            "100",
            "--beta2",
            "0.99",
            "--eval-every",
            "250",
            "--eval-batches",
            "400",
            "--no-progress",
        ]
        names = ("tinygrad", "tinygrad, second run") if backend == "tinygrad" else (backend,)
        units.append([(name, ours, ROOT, backend == "tinygrad") for name in names])
    results: dict[str, list[dict]] = {name: [] for unit in units for name, *_ in unit}
    for round_ in range(rounds):
        for unit in units if round_ % 2 == 0 else units[::-1]:
            for name, command, cwd, own_cache in unit:
                log(f"round {round_ + 1}, {'nanoGPT' if name == 'nanogpt' else f'ours, {name}'}")
                slug = name.replace(", ", "-").replace(" ", "-")
                out = work / f"{slug}-{round_ + 1}"
                # tinygrad: a kernel cache of its own, empty before the round's first run (everything
                # compiled); the second run finds what the first left, as a user's next run does.
                env = {"CACHEDB": str(work / f"tinygrad-cache-{round_ + 1}.db")} if own_cache else None
                to = [f"--out_dir={out}"] if name == "nanogpt" else ["--out", str(out)]
                results[name].append(timed([*command, *to], cwd, out.with_suffix(".log"), env))
    return results


def summary(rounds: list[dict], base: list[dict]) -> dict:
    """One run's rounds as the median wall time, the range of its ratios to nanoGPT's run in the same
    round, and the first round's other figures (the same in every round: the runs are seeded)."""
    walls = [r["wall_s"] for r in rounds]
    ratios = [r["wall_s"] / b["wall_s"] for r, b in zip(rounds, base)]
    failed = next((r["returncode"] for r in rounds if r["returncode"] != 0), 0)  # a signal's is negative
    return {**rounds[0], "wall_s": round(float(np.median(walls)), 1), "ratio_median": float(np.median(ratios)),
            "ratio_range": [min(ratios), max(ratios)], "returncode": failed}


def markdown(result: dict) -> str:
    rounds = result["runs"]
    runs = {name: summary(r, rounds["nanogpt"]) for name, r in rounds.items()}
    base, n = runs["nanogpt"], len(rounds["nanogpt"])
    lines = [
        "# nanoGPT's CPU baby-GPT recipe and ours, side by side\n",
        f"`{result['run']['command']}` on {result['machine']['cpu']} ({result['machine']['cpus']} CPUs), "
        f"{result['run']['date']}, commit {result['machine']['commit']}, nanoGPT {result['nanogpt_commit']}, "
        f"text {result['text_chars']:,} characters. Load average {result['run']['load_average']}. "
        "Runs one after another; wall time includes start-up, data preparation and compiling. tinygrad runs "
        "twice on a kernel cache of their own, empty before the first run; the second finds the kernels the "
        "first compiled (the last column: kernels read from disk instead of compiled).\n",
        *[f"{n} rounds, nanoGPT first in odd rounds and last in even ones: wall time is the median over the "
          "rounds, and / nanoGPT the median of each round's ratio to nanoGPT's run of that round (its range "
          "beside it).\n"] * (n > 1),
        "| run | wall s | / nanoGPT | val loss | - nanoGPT's | kernels from an earlier run |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in runs.items():
        if r["returncode"] != 0:
            lines.append(f"| {name} | failed (exit {r['returncode']}) | | | | |")
            continue
        low, high = r["ratio_range"]
        ratio = f"{r['ratio_median']:.2f}x" + (f" ({low:.2f}-{high:.2f})" if n > 1 else "")
        diff = None if r["val_loss"] is None or base["val_loss"] is None else r["val_loss"] - base["val_loss"]
        lines.append(
            f"| {name} | {r['wall_s']} | {ratio} | {r['val_loss']} | {'' if diff is None else f'{diff:+.4f}'} | "
            f"{r.get('kernels_from_earlier_run', 0) if name.startswith('tinygrad') else ''} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nanogpt", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT checkout (with train.py)")
    parser.add_argument("--text", type=Path, default=None, help="plain-text file (default: standard-library source)")
    parser.add_argument("--mb", type=float, default=1.1, help="MB of standard-library source without --text")
    parser.add_argument("--backend", nargs="+", choices=("torch", "tinygrad"), default=["torch", "tinygrad"])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument("--rounds", type=int, default=1, help="times to run the whole sequence (default 1)")
    parser.add_argument("--name", default="nanogpt-baby", help="results file name, without .md/.json")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give 1 or more")
    if not (args.nanogpt / "train.py").exists():
        parser.error(f"--nanogpt {args.nanogpt} has no train.py: pass the root of a nanoGPT checkout")
    if args.text is not None and not args.text.is_file():
        parser.error(f"--text {args.text} is not a file: pass a plain-text file")
    text = args.text.read_text(encoding="utf-8", errors="replace") if args.text else default_text(args.mb)
    log = Progress()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.nanogpt, capture_output=True, text=True)
    with tempfile.TemporaryDirectory(prefix="nanogpt-bench-") as tmp:
        runs = run(args.nanogpt, text, args.backend, Path(tmp), log, args.rounds)
    result = {
        "runs": runs,
        "recipe": RECIPE,
        "text_chars": len(text),
        "nanogpt_commit": commit.stdout.strip() or None,
        "machine": machine(),
        "versions": package_versions(),
        "run": log.record("benchmarks.nanogpt", argv),
    }
    write_results(args.out / args.name, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
