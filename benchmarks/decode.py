"""Greedy generation: new tokens per second with and without the KV cache, first-token latency, and
the cost of one decode step at every position.

Each timed call is one `core.generate.generation.generate` run (what `generate` and `chat` do): a prompt of
`prompt_len` tokens per row, `new_tokens` new tokens, temperature 0. It includes prefill, every
decode step, moving logits to numpy and choosing tokens there. New tokens per second counts all
rows (batch * new_tokens / seconds). Time to first token is the prefill plus the first choice.
With the cache, each step feeds one token; without it, each step runs the whole sequence so far,
as nanoGPT's `generate` does. The Hugging Face peer runs `generate` with its own cache.

Per-position cost: after a prefill, each `decode` call is timed on its own, for positions
prompt_len .. prompt_len + new_tokens - 1; the table gives the mean in four equal spans. With a
cache it must stay flat (attention over more cached keys is a small part of a step at this size).

tinygrad without the cache compiles every sequence length anew (minutes for 224 lengths), so
`--quick` leaves that one out, and times generation without the cache at batch 1 only (at batch 8
it is the slowest figure of the suite and says nothing batch 1 does not).

The floor. A cached step reads every weight once (the output head alone is vocab x n_embd floats),
so on a CPU it can be no faster than the weight bytes divided by the memory bandwidth. `floor`
measures that bandwidth (a sum over an array far larger than the caches) and reports the least
milliseconds a step could take: the fastest new tokens/s possible at batch 1, whatever the framework.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from benchmarks.common import MemoryMeter, interleave
from core.generate.generation import generate
from core.model.config import GPTConfig


def lengths(config: GPTConfig, prompt_len: int, new_tokens: int) -> tuple[int, int]:
    """The prompt and new-token counts, shrunk to fit the context window (the defaults fill it exactly)."""
    if prompt_len + new_tokens <= config.block_size:
        return prompt_len, new_tokens
    prompt = max(1, min(prompt_len, config.block_size // 8))
    return prompt, config.block_size - prompt


def _ours(model, prompts: np.ndarray, new_tokens: int, use_cache: bool, outputs: dict, key: str):
    def run() -> dict:
        first: list[float] = []
        start = time.perf_counter()
        out = generate(
            model,
            prompts,
            new_tokens,
            use_cache=use_cache,
            on_token=lambda row, token: first.append(time.perf_counter()) if not first else None,
        )
        outputs[key] = out
        return {"first_token_s": first[0] - start}

    return run


def _peer(peer, prompts: np.ndarray, new_tokens: int, outputs: dict, key: str):
    def run() -> dict:
        out, first = peer.generate(prompts, new_tokens)
        outputs[key] = out
        return {"first_token_s": first}

    return run


def position_costs(model, prompts: np.ndarray, new_tokens: int) -> list[float]:
    """Seconds of each `decode` call after a prefill, position by position (the token fed is arbitrary)."""
    model.prefill(prompts)
    feed, costs = prompts[:, -1], []
    for _ in range(new_tokens - 1):
        start = time.perf_counter()
        model.decode(feed)
        costs.append(time.perf_counter() - start)
    return costs


def spans(costs: list[float], first_position: int, parts: int = 4) -> list[dict]:
    """Mean milliseconds per step over `parts` equal spans of positions."""
    chunks = np.array_split(np.arange(len(costs)), parts)
    return [
        {
            "positions": f"{first_position + c[0]}-{first_position + c[-1]}",
            "ms": round(1000 * statistics.mean(costs[i] for i in c), 3),
        }
        for c in chunks
        if len(c)
    ]


def floor(config: GPTConfig, repeats: int = 5) -> dict:
    """Weight megabytes read per decode step, measured read bandwidth, and the fastest step they allow."""
    from core.model.params import count_params

    big = np.ones(256 * 2**20 // 4, dtype=np.float32)  # 256 MB, well past any cache
    try:
        import torch

        array, read = torch.from_numpy(big), lambda a: a.sum()  # uses torch's threads, as the models do
    except ImportError:
        array, read = big, np.sum
    read(array)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        read(array)
        times.append(time.perf_counter() - start)
    gb_per_s = big.nbytes / statistics.median(times) / 1e9
    weight_mb = 4 * count_params(config) / 1e6
    least_ms = weight_mb / gb_per_s  # MB / (GB/s) = ms
    return {
        "weight_mb": round(weight_mb, 1),
        "read_gb_per_s": round(gb_per_s, 1),
        "least_ms_per_step": round(least_ms, 3),
        "most_tokens_per_s_batch_1": round(1000 / least_ms, 1),
    }


def run(
    models: dict,
    peer,
    config: GPTConfig,
    batches: list[int],
    prompt_len: int,
    new_tokens: int,
    repeats: int,
    quick: bool,
    devices: dict[str, str],
    log,
) -> dict:
    """`models` maps a backend name to a built Model; `peer` is an HFPeer or None."""
    prompt_len, new_tokens = lengths(config, prompt_len, new_tokens)
    rng = np.random.default_rng(0)
    rows, positions, agreement = [], [], []
    for batch in batches:
        prompts = rng.integers(0, config.vocab_size, (batch, prompt_len))
        outputs: dict[str, list] = {}
        variants = {}
        for name, model in models.items():
            variants[f"{name} cache"] = _ours(model, prompts, new_tokens, True, outputs, name)
            if not (quick and (name == "tinygrad" or batch > 1)):
                variants[f"{name} no cache"] = _ours(model, prompts, new_tokens, False, outputs, name + " no cache")
        if peer is not None:
            variants["hf cache"] = _peer(peer, prompts, new_tokens, outputs, "hf")
        log(f"decode batch {batch}: prompt {prompt_len} + {new_tokens} new tokens")
        meters = {name: MemoryMeter(name.split()[0], devices.get(name.split()[0], "cpu")) for name in variants}
        timings = interleave(variants, repeats, warmup=1, log=log, meters=meters)
        for name, timing in timings.items():
            backend, mode = name.split(" ", 1)
            rows.append(
                {
                    "backend": backend,
                    "batch": batch,
                    "cache": mode == "cache",
                    **timing.as_dict(),
                    "tokens_per_s": round(batch * new_tokens / timing.median_s, 2),
                    "ms_per_token": round(1000 * timing.median_s / new_tokens, 3),
                    "first_token_ms": round(1000 * timing.extra("first_token_s"), 2),
                }
            )
        for name, model in models.items():
            sweeps = [position_costs(model, prompts, new_tokens) for _ in range(1 if quick else 3)]
            costs = [statistics.median(step) for step in zip(*sweeps)]
            per_span = spans(costs, prompt_len)
            positions.append(
                {
                    "backend": name,
                    "batch": batch,
                    "spans": per_span,
                    "last_over_first": round(per_span[-1]["ms"] / per_span[0]["ms"], 2),
                }
            )
        if "hf" in outputs:  # same weights, greedy: the tokens should agree up to float round-off
            for name in models:
                same = [a == b for a, b in zip(outputs[name], outputs["hf"])]
                agreement.append({"backend": name, "batch": batch, "rows_equal_to_hf": f"{sum(same)}/{len(same)}"})
    return {
        "floor": floor(config),
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "results": rows,
        "positions": positions,
        "agreement": agreement,
    }
