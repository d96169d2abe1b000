"""The benchmark suite's command line: `python -m benchmarks [--quick] [options]`.

Runs, in one process so that every comparison is timed side by side: the float32 matmul peak of
each framework, attention alone (benchmarks/attention.py), greedy generation with and without the
KV cache (benchmarks/decode.py) and training steps (benchmarks/training.py), each for the chosen
backends and the Hugging Face peer (benchmarks/peer.py). Writes <name>.json, <name>.md and
<name>.png to benchmarks/results/ (or --out), where name is <config>-<quick|full>.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import load_average, machine, package_versions

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("attention", "decode", "training")
# The reference configuration of the issue: the `tiny` preset with an 8,192-token vocabulary, batch 16.
REFERENCE = dict(preset="tiny", vocab_size=8192, batch_size=16)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from core.model.config import PRESETS

    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one attention shape, fewer repetitions, generation without the cache at batch 1 and in "
        "torch only (a few minutes); the default is the full grid",
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=("torch", "tinygrad"),
        default=["torch", "tinygrad"],
        help="backends to measure (default: both)",
    )
    parser.add_argument(
        "--device", default=None, help="device for every framework, e.g. cpu or cuda (default: each backend's best)"
    )
    parser.add_argument(
        "--config",
        default="reference",
        choices=["reference", *PRESETS],
        help="model size: reference (vocab 8192, block 256, 4 layers, 4 heads, 256 dims) or a preset",
    )
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=REFERENCE["vocab_size"],
        help="vocabulary size for presets other than gpt2 (default 8192)",
    )
    parser.add_argument("--batch-size", type=int, default=REFERENCE["batch_size"], help="training batch (default 16)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--no-peer", action="store_true", help="leave out the Hugging Face peer")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions per figure (default 3, full 7)")
    parser.add_argument("--attention-shape", type=int, nargs=4, default=None, metavar=("B", "H", "T", "D"),
                        help="time attention at this one shape instead of the grid")
    parser.add_argument("--decode-batches", type=int, nargs="+", default=[1, 8], help="generation batch sizes")
    parser.add_argument("--prompt-len", type=int, default=32, help="prompt tokens per row (default 32)")
    parser.add_argument("--new-tokens", type=int, default=224, help="new tokens per row (default 224)")
    parser.add_argument("--matmul-size", type=int, default=None, help="n of the n³ peak matmul (1024, full 2048)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (torch.set_num_threads) and tinygrad (NUM_CPU_THREADS); "
        "default: each framework's own choice",
    )
    parser.add_argument(
        "--beam",
        type=int,
        default=None,
        help="tinygrad BEAM kernel search width (its search time counts as warm-up; results are "
        "cached on disk); default: tinygrad's BEAM environment variable, else off",
    )
    parser.add_argument(
        "--tinygrad-examples",
        type=Path,
        default=None,
        metavar="DIR",
        help="a tinygrad source checkout: also time its examples/llm.c/train_gpt2.py and "
        "examples/gpt2.py at this configuration (benchmarks/tinygrad_examples.py)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results (default benchmarks/results)")
    parser.add_argument("--name", default=None, help="file name stem (default <config>-<quick|full>)")
    args = parser.parse_args(argv)
    for name in ("vocab_size", "batch_size", "prompt_len", "new_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} is invalid: use a positive integer")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats={args.repeats} is invalid: use a positive integer")
    if args.attention_shape is not None and min(args.attention_shape) < 1:
        parser.error(f"--attention-shape {args.attention_shape} is invalid: use four positive integers")
    if min(args.decode_batches) < 1:
        parser.error(f"--decode-batches {args.decode_batches} is invalid: use positive integers")
    if args.tinygrad_examples is not None and not (args.tinygrad_examples / "examples" / "gpt2.py").exists():
        parser.error(
            f"--tinygrad-examples {args.tinygrad_examples} has no examples/gpt2.py: "
            "pass the root of a tinygrad checkout"
        )
    return args


def model_config(args: argparse.Namespace):
    from core.model.config import preset

    name = REFERENCE["preset"] if args.config == "reference" else args.config
    return preset(name, **({} if name == "gpt2" else {"vocab_size": args.vocab_size}))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Both frameworks read these when they load, which happens below.
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = os.environ["NUM_CPU_THREADS"] = str(args.threads)
    if args.beam is not None:
        os.environ["BEAM"] = str(args.beam)
    repeats = args.repeats or (3 if args.quick else 7)
    started, loads = time.perf_counter(), [load_average()]

    def log(message: str) -> None:
        loads.append(load_average())
        print(f"[{time.perf_counter() - started:6.0f} s, load {loads[-1]}] {message}", file=sys.stderr, flush=True)

    from backends import get_backend
    from benchmarks import attention, decode, peer, report, training
    from core.model.config import TrainConfig
    from core.model.params import init_params

    config = model_config(args)
    train = TrainConfig(batch_size=args.batch_size)
    params = init_params(config, seed=0)
    chosen = {name: get_backend(name, args.device) for name in args.backend}
    devices = {name: str(b.device) for name, b in chosen.items()}
    threads = {}
    if "torch" in chosen:
        import torch

        if args.threads is not None:
            torch.set_num_threads(args.threads)
        threads["torch"] = torch.get_num_threads()
    if "tinygrad" in chosen:
        from tinygrad.helpers import BEAM, NUM_CPU_THREADS

        from backends.tinygrad import fusion

        threads["tinygrad"] = NUM_CPU_THREADS.value
    for name, backend in chosen.items():
        print(f"using {name} on {backend.device}", file=sys.stderr)
    models = {name: b.build(config, params, train) for name, b in chosen.items()}
    hf = None
    if not args.no_peer and peer.available():
        torch_device = devices.get("torch") or get_backend("torch", args.device).device
        hf = peer.HFPeer(config, params, torch_device, train)
        devices["hf"] = str(torch_device)
    elif not args.no_peer:
        print("transformers is not installed: the Hugging Face peer is left out", file=sys.stderr)

    versions = package_versions()
    result = {
        "config": {"name": args.config, **config.to_dict(), "batch_size": args.batch_size},
        "machine": machine(),
        "versions": versions,
        "settings": {"tinygrad_fast": fusion.FAST, "tinygrad_beam": BEAM.value} if "tinygrad" in chosen else {},
        "peer": hf.versions() if hf else None,
    }
    frameworks = {name: devices[name] for name in chosen}
    if "training" in args.only:
        n = args.matmul_size or (1024 if args.quick else 2048)
        result["matmul_n"] = n
        result["matmul_gflops"] = training.matmul_peaks(frameworks, n, repeats, log)
    if "attention" in args.only:
        shapes = [tuple(args.attention_shape)] if args.attention_shape else attention.grid(config, args.quick)
        result["attention"] = attention.run(frameworks, shapes, repeats, log)
    if "decode" in args.only:
        result["decode"] = decode.run(
            models, hf, config, args.decode_batches, args.prompt_len, args.new_tokens, repeats, args.quick, devices, log
        )
    if "training" in args.only:
        peak = max(result["matmul_gflops"].values(), default=None)
        result["training"] = training.run(models, hf, config, args.batch_size, repeats, peak, devices, log)
    if args.tinygrad_examples is not None:
        from benchmarks import tinygrad_examples

        if "tinygrad" not in models:
            raise SystemExit("--tinygrad-examples compares with our tinygrad backend: add --backend tinygrad")
        result["tinygrad_examples"] = tinygrad_examples.run(
            args.tinygrad_examples,
            models["tinygrad"],
            config,
            args.batch_size,
            args.decode_batches,
            args.prompt_len,
            args.new_tokens,
            repeats,
            log,
            tuple(section for section in ("training", "decode") if section in args.only),
        )
    result["ratios"] = report.ratios(result)
    result["targets"] = report.targets(result)
    loads.append(load_average())
    result["run"] = {
        "command": "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "mode": "quick" if args.quick else "full",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.perf_counter() - started, 1),
        "devices": devices,
        "threads": threads or None,
        "repeats": repeats,
        "load_average": {"start": loads[0], "end": loads[-1], "max": max(loads), "samples": loads},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / (args.name or f"{args.config}-{result['run']['mode']}")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(report.markdown(result))
    report.chart(result, stem.with_suffix(".png"))
    print(report.markdown(result))
    print(f"wrote {stem}.json, .md and .png", file=sys.stderr)
    return 0
