"""Tune tinygrad's kernels for one run's shapes: `python -m benchmarks.tune_tinygrad --seconds 600`.

Builds the model of a configuration (the README's default run, nanoGPT's baby GPT, the reference
configuration, or any sizes given as flags), runs a training step, an evaluation forward pass and a
batch-1 decode step until they are compiled, then BEAM-searches their kernels, slowest first,
within the time budget (backends/tinygrad/tune.py). The results stay in tinygrad's disk cache:
every later training or generation run with these shapes compiles with them at no search cost, and
says so in one line. Running it again continues where the budget stopped. Writes tune-<config>.json
to benchmarks/results/ (or --out).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.profile_tinygrad import CONFIGS, RESULTS
from core.model.config import GPTConfig

SHAPES = CONFIGS  # "default" is the README's first run (RUN_PRESETS["default"], its BPE vocabulary and batch)
SIZE_FLAGS = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tune_tinygrad", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=SHAPES, default="default", help="shapes to tune (default: the default run)")
    for name in SIZE_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None, help=f"override the config's {name}")
    parser.add_argument("--batch-size", type=int, default=None, help="override the config's training batch")
    parser.add_argument("--seconds", type=float, default=600, help="search budget (default 600)")
    parser.add_argument("--beam", type=int, default=2, help="BEAM width (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.beam < 1:
        parser.error("--seconds must be positive and --beam at least 1")
    fields, batch = SHAPES[args.config]
    fields = {**fields, **{n: getattr(args, n) for n in SIZE_FLAGS if getattr(args, n) is not None}}
    try:
        config = GPTConfig(**fields)
    except ValueError as e:
        parser.error(str(e))
    batch = args.batch_size or batch
    started = time.perf_counter()
    print(f"tuning tinygrad kernels for {fields}, batch {batch}, for {args.seconds:.0f} s", file=sys.stderr)
    from backends.tinygrad import tune

    found = tune.tune(tune.steps_of(config, batch), args.seconds, args.beam, log=lambda m: print(m, file=sys.stderr))
    result = {
        "config": fields,
        "batch_size": batch,
        "beam": args.beam,
        "budget_s": args.seconds,
        **found,
        "command": "python -m benchmarks.tune_tinygrad " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"tune-{args.config}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"searched {found['searched']} of {found['kernels']} kernels in {found['seconds']} s; tuned kernels now take "
        f"{100 * found['time_share_tuned']:.0f}% of these steps' kernel time (measured before tuning)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
