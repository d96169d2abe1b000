"""Each tinygrad speed lever on and off, side by side in one run: `python -m benchmarks.levers_tinygrad`.

Variants of one training step (and of one cached decode step), timed in turn (benchmarks/common.py
`interleave`), so that the ratios between them carry no drift of a shared machine's load:

- default: every lever on;
- no threads: kernel thread parts run in turn, as tinygrad 0.14 runs them (threads.py off);
- no replay: captured steps go through TinyJit's own replay (replay.py off);
- no tuned kernels: kernels compiled without the BEAM results `tune` left in the disk cache (tune.py);
- no matmul options: matrix products compiled with tinygrad's own options, not ours (gemm.py, matvec.py);
- no wide loads: kernels compiled with tinygrad's 4-wide vector loads and stores (wide_loads.py);
- tinygrad as shipped: all of the above off and GPT_TINYGRAD_FAST's older levers too.

A lever that acts when a step is traced or compiled (FAST, matmul options, wide loads) gets its own model,
built and traced with it off; threads act per call. Writes levers-<config>.json and .md to benchmarks/results/
(or --out).
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.common import Progress, interleave, result_of, write_results
from benchmarks.profile_tinygrad import CONFIGS, RESULTS
from core.model.config import GPTConfig, TrainConfig

VARIANTS = {  # name -> the settings it runs under (everything else on)
    "default": {},
    "no threads": {"threads": False},
    "no replay": {"replay": False},
    "no tuned kernels": {"tuned": False},
    "no matmul options": {"matmul": False},
    "no wide loads": {"wide": False},
    "tinygrad as shipped": {
        "threads": False, "replay": False, "fast": False, "tuned": False, "matmul": False, "wide": False
    },
}


@contextmanager
def settings(
    threads: bool = True,
    replay: bool = True,
    fast: bool = True,
    tuned: bool = True,
    matmul: bool = True,
    wide: bool = True,
):
    from backends.tinygrad import fusion, gemm, matvec, tune, wide_loads
    from backends.tinygrad import replay as replay_module
    from backends.tinygrad import threads as threads_module

    saved = threads_module.enabled(), replay_module.ENABLED, fusion.FAST, tune.ENABLED, gemm.ENABLED, matvec.ENABLED
    threads_module.enable(threads)
    replay_module.ENABLED, fusion.FAST, tune.ENABLED = replay, fast, tuned
    gemm.ENABLED = matvec.ENABLED = matmul
    try:
        if wide:
            yield
        else:  # its own cache of compiled kernels (wide_loads.disabled), copied in and out on every call:
            # tens of microseconds charged to this variant, small against a step but not nothing
            with wide_loads.disabled():
                yield
    finally:
        threads_module.enable(saved[0])
        replay_module.ENABLED, fusion.FAST, tune.ENABLED, gemm.ENABLED, matvec.ENABLED = saved[1:]


def run(config_name: str, names: list[str], decode_batches: list[int], repeats: int, log) -> dict:
    from backends import get_backend
    from core.model.params import init_params

    fields, batch = CONFIGS[config_name]
    config = GPTConfig(**fields)
    params = init_params(config, seed=0)
    backend = get_backend("tinygrad")
    models = {}
    for name in names:
        with settings(**VARIANTS[name]):
            models[name] = backend.build(config, params, TrainConfig(batch_size=batch))
    rng = np.random.default_rng(0)
    data = rng.integers(0, config.vocab_size, (batch, config.block_size + 1))
    x, y = data[:, :-1], data[:, 1:]

    def train(name):
        def call():
            with settings(**VARIANTS[name]):
                models[name].train_step(x, y, 1e-4)

        return call

    log(f"training steps, batch {batch} x {config.block_size}, variants {names}")
    timings = interleave({n: train(n) for n in names}, repeats, warmup=3, log=log)
    result = {"training": {n: t.as_dict() for n, t in timings.items()}}
    prompt = config.block_size // 8
    for b in decode_batches:
        tokens = rng.integers(0, config.vocab_size, (b, prompt))

        def decode(name, tokens=tokens, b=b):
            def call():
                with settings(**VARIANTS[name]):
                    model = models[name]
                    if model.cache is None or model.cache.k[0].shape[0] != b or model.cache.pos >= config.block_size:
                        model.prefill(tokens)
                    model.decode(tokens[:, -1:])

            return call

        log(f"decode steps, batch {b}")
        timings = interleave({n: decode(n) for n in names}, max(repeats, 20), warmup=4, log=log)
        result[f"decode_batch_{b}"] = {n: t.as_dict() for n, t in timings.items()}
    return result


def markdown(result: dict) -> str:
    lines = [
        f"# tinygrad speed levers, on and off: `{result['config_name']}`\n",
        f"`{result['run']['command']}` on {result['machine']['cpu']} ({result['machine']['cpus']} CPUs), "
        f"{result['run']['date']}, commit {result['machine']['commit']}, load average "
        f"{result['run']['load_average']}. Variants timed in turn; each figure is a median.\n",
    ]
    for section, rows in result["sections"].items():
        base = rows["default"]["median_s"]
        lines += [
            f"## {section.replace('_', ' ')}\n",
            "| variant | ms | default is faster by | first call s |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {name} | {1e3 * r['median_s']:.2f} | {r['median_s'] / base:.2f}x | {r['first_call_s']} |"
            for name, r in rows.items()
        ]
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.levers_tinygrad", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        choices=CONFIGS,
        default="baby",
        help="baby (nanoGPT's CPU recipe), default (the README's first run) or reference",
    )
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="variants to time")
    parser.add_argument("--decode-batches", type=int, nargs="*", default=[1, 8], help="decode batch sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5; decode at least 20)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args(argv)
    if "default" not in args.variants:
        parser.error("--variants must include default: the ratios are taken against it")
    log = Progress()

    sections = run(args.config, args.variants, args.decode_batches, args.repeats, log)
    result = result_of(
        "benchmarks.levers_tinygrad",
        argv,
        log,
        config_name=args.config,
        config=CONFIGS[args.config][0],
        sections=sections,
    )
    write_results(args.out / f"levers-{args.config}", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
