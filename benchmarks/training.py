"""Training speed: milliseconds per optimizer step, tokens per second, model FLOPs utilisation.

One step is `Model.train_step` on a fixed batch (batch_size x block_size tokens): forward,
cross-entropy, backward, clipping, AdamW, and the loss back as a Python float (so every step is
synchronized). The peer does the same with Hugging Face's GPT-2 and `torch.optim.AdamW`.

MFU (model FLOPs utilisation) divides the FLOPs a step needs by the time it took and by a peak:
the float32 matmul rate measured in the same run (`matmul_peaks`; the fastest framework's rate is
the machine's peak). It cannot exceed 100%: a step that beats the measured peak gets no MFU and a
note saying the peak measurement was low. FLOPs per token follow nanoGPT and PaLM: 6 per parameter, position embeddings
left out, plus 12 * n_layer * n_embd * block_size for attention.

The first steps are warm-up (tinygrad: step 0 runs eagerly and compiles its kernels, step 1
captures the JIT); the first step's time is reported as compile time.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import MemoryMeter, interleave, torch_sync
from core.model.config import GPTConfig


def flops_per_token(config: GPTConfig) -> int:
    """nanoGPT's `estimate_mfu`: 6N + 12 L C T, N without the position embeddings."""
    from core.model.params import count_params

    n = count_params(config) - (config.block_size * config.n_embd if config.position == "learned" else 0)
    return 6 * n + 12 * config.n_layer * config.n_embd * config.block_size


# ---- matmul peak


def matmul_peaks(frameworks: dict[str, str], n: int, repeats: int, log) -> dict[str, float]:
    """float32 GFLOP/s of an n x n x n matmul per framework (tinygrad under TinyJit), interleaved."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    variants = {}
    if "torch" in frameworks:
        import torch

        dev = torch.device(frameworks["torch"])
        ta, tb = torch.from_numpy(a).to(dev), torch.from_numpy(b).to(dev)

        def torch_matmul():
            ta @ tb
            torch_sync(dev)

        variants["torch"] = torch_matmul
    if "tinygrad" in frameworks:
        from tinygrad import Device, Tensor, TinyJit

        device = frameworks["tinygrad"]
        ga, gb = Tensor(a, device=device).realize(), Tensor(b, device=device).realize()
        jitted = TinyJit(lambda x, y: (x @ y).realize())

        def tinygrad_matmul():
            jitted(ga, gb)
            Device[device].synchronize()

        variants["tinygrad"] = tinygrad_matmul
    log(f"matmul peak {n}x{n}x{n}")
    timings = interleave(variants, repeats, warmup=3, log=log)
    return {name: round(2 * n**3 / t.median_s / 1e9, 4) for name, t in timings.items()}


# ---- training steps


def run(
    models: dict,
    peer,
    config: GPTConfig,
    batch_size: int,
    repeats: int,
    peak_gflops: float | None,
    devices: dict[str, str],
    log,
) -> list[dict]:
    """`models` maps a backend name to a built Model; `peer` is an HFPeer or None."""
    rng = np.random.default_rng(0)
    batch = rng.integers(0, config.vocab_size, (batch_size, config.block_size + 1))
    x, y = batch[:, :-1], batch[:, 1:]
    steppers = {name: model.train_step for name, model in models.items()}
    if peer is not None:
        steppers["hf"] = peer.train_step
    losses: dict[str, float] = {}

    def step(name):
        def call():
            losses[name] = steppers[name](x, y, 1e-4)

        return call

    variants = {name: step(name) for name in steppers}
    warmup = {name: 3 if name == "tinygrad" else 2 for name in variants}
    log(f"training batch {batch_size} x {config.block_size} tokens")
    meters = {name: MemoryMeter(name, devices.get(name, "cpu")) for name in variants}
    timings = interleave(variants, repeats, warmup, log, meters)
    tokens = batch_size * config.block_size
    flops = flops_per_token(config) * tokens
    rows = []
    for name, timing in timings.items():
        row = {
            "backend": name,
            **timing.as_dict(),
            "ms_per_step": round(1000 * timing.median_s, 1),
            "tokens_per_s": round(tokens / timing.median_s, 1),
            "model_tflop_per_step": round(flops / 1e12, 4),
            "achieved_gflops": round(flops / timing.median_s / 1e9, 2),
            "mfu": mfu(flops / timing.median_s / 1e9, peak_gflops),
            "last_loss": round(losses[name], 4),
        }
        if row["mfu"] is None and peak_gflops:
            row["mfu_note"] = f"above the measured matmul peak of {peak_gflops:,.1f} GFLOP/s: that measurement was low"
        rows.append(row)
    return rows


def mfu(achieved_gflops: float, peak_gflops: float | None) -> float | None:
    """Achieved / peak, never above 1: a step faster than the measured matmul peak means the peak was
    measured low (machine load, a shape that suits the machine less), so no MFU is reported then."""
    if not peak_gflops or achieved_gflops > peak_gflops:
        return None
    return round(achieved_gflops / peak_gflops, 5)
