"""A decode step's matrix-vector products with and without matvec.py's options: `python -m benchmarks.matvec`.

For each weight shape of a configuration's decode step (the four linear layers and the output head,
at batch 1 and 8), one jitted product x @ W is built twice, with tinygrad's own kernel options and
with ours (backends/tinygrad/matvec.py), and the two kernels are timed in turn, each waited for on
its own (kernel_timer.py), so that the ratio is free of launch overhead and of the load's drift.
Writes matvec-<config>.json and .md to benchmarks/results/ (or --out).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from benchmarks.common import Progress, result_of, write_results
from benchmarks.profile_tinygrad import CONFIGS, RESULTS


def shapes(fields: dict) -> list[tuple[str, int, int, bool]]:
    """(name, in, out, weight stored (out, in)) of each matrix a GPT-2 decode step multiplies by."""
    C, V = fields["n_embd"], fields["vocab_size"]
    return [
        ("attn.c_attn", C, 3 * C, False),
        ("attn.c_proj", C, C, False),
        ("mlp.c_fc", C, 4 * C, False),
        ("mlp.c_proj", 4 * C, C, False),
        ("output head (wte.T)", C, V, True),
    ]


def product(batch: int, n_in: int, n_out: int, by_row: bool, ours: bool, rounds: int) -> dict:
    """Median kernel seconds of x (batch, in) @ W, W stored (in, out) or, `by_row`, (out, in) and transposed."""
    from tinygrad import Tensor

    from backends.tinygrad import matvec
    from backends.tinygrad.kernel_timer import kernel_timer
    from backends.tinygrad.replay import Replay

    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((batch, n_in), dtype=np.float32)).realize()
    w_np = rng.standard_normal((n_out, n_in) if by_row else (n_in, n_out), dtype=np.float32)
    w = Tensor(w_np).realize()
    saved, matvec.ENABLED = matvec.ENABLED, ours
    try:
        step = Replay(lambda x: (x @ (w.T if by_row else w)).realize(), "CPU")
        for _ in range(3):  # run, capture, replay
            out = step(x)
    finally:
        matvec.ENABLED = saved
    error = float(np.abs(out.numpy() - x.numpy() @ (w_np.T if by_row else w_np)).max())
    seconds = []
    for _ in range(rounds):
        with kernel_timer() as calls:
            step(x)
        seconds.append(sum(took for _, took, _ in calls))
    return {"median_s": statistics.median(seconds), "max_abs_error": error}


def markdown(result: dict) -> str:
    lines = [
        f"# Decode-step matrix-vector products: tinygrad's kernel options and ours (`{result['config_name']}`)\n",
        f"`{result['run']['command']}` on {result['machine']['cpu']} ({result['machine']['cpus']} CPUs), "
        f"{result['run']['date']}, commit {result['machine']['commit']}, load average "
        f"{result['run']['load_average']}. Kernel time only (each kernel waited for), medians; the two "
        "variants of a row timed in the same minute. Error: largest |difference| from numpy's product.\n",
        "| matrix | batch | in x out | tinygrad us | GFLOP/s | ours us | GFLOP/s | ours faster by | error (ours) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        flops = 2 * r["batch"] * r["in"] * r["out"]
        base, ours = r["tinygrad"]["median_s"], r["ours"]["median_s"]
        lines.append(
            f"| {r['matrix']} | {r['batch']} | {r['in']} x {r['out']} | {1e6 * base:.1f} | {flops / base / 1e9:.2f} | "
            f"{1e6 * ours:.1f} | {flops / ours / 1e9:.2f} | {base / ours:.2f}x | {r['ours']['max_abs_error']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.matvec", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=CONFIGS, default="reference", help="whose decode-step shapes")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="decode batch sizes")
    parser.add_argument("--rounds", type=int, default=50, help="timed calls of each kernel (default 50)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args(argv)
    from backends import get_backend

    get_backend("tinygrad")  # its thread parts, replay and compile hook, as a decode step has them
    log = Progress()
    rows = []
    for batch in args.batches:
        for name, n_in, n_out, by_row in shapes(CONFIGS[args.config][0]):
            timed = {v: product(batch, n_in, n_out, by_row, v == "ours", args.rounds) for v in ("tinygrad", "ours")}
            rows.append({"matrix": name, "batch": batch, "in": n_in, "out": n_out, **timed})
            log(f"{name} batch {batch}: {timed['tinygrad']['median_s'] / timed['ours']['median_s']:.2f}x")
    result = result_of("benchmarks.matvec", argv, log, config_name=args.config, rows=rows)
    write_results(args.out / f"matvec-{args.config}", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
