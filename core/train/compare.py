"""Architecture comparison: several model configurations trained on the same data, tokens and seed, in one
backend, then one table and one plot of all of them.

Every model sees the same batches (the seeded stream of core/data/batches.py), the same validation
windows and the same schedule, so the only difference between rows is the architecture. The table holds
each model's parameter count, training throughput, final and best validation loss and bits per byte;
the plot draws validation loss against tokens seen and against wall time.

Bits per byte is the validation loss in bits per token times the validation split's tokens per UTF-8
byte: comparable across tokenizers, and here the same tokenizer for every row.
"""

from __future__ import annotations

import json
import math
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from core.data.dataset import DataSettings, prepare_dataset
from core.model.config import GPTConfig, TrainConfig
from core.model.interface import Backend
from core.model.params import count_params
from core.plots.training_curve import plt, read_metrics
from core.train.loop import train

# The comparison run when no models are named: GPT-2's architecture against Llama's at (nearly) equal
# parameter count (`default_models`). Small, so that three models train in minutes on a laptop CPU.
LLAMA = dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False)
DEFAULT_BASE = dict(n_layer=3, n_head=4, n_embd=96, block_size=64)


def default_models(base: dict) -> dict[str, dict]:
    """GPT-2, RoPE+RMSNorm+SwiGLU, and the same with two key/value heads, at GPT-2's parameter count.

    SwiGLU has three matrices where GELU has two, so its hidden width is 8/3 * n_embd rather than
    4 * n_embd; grouped-query attention's smaller key/value projections are given back to the MLP."""
    C, H = base["n_embd"], base["n_head"]
    hidden = round(8 * C / 3)
    saved = 2 * C * (C - 2 * C // H)  # c_attn columns of the keys and values of H - 2 heads
    return {
        "gpt2": {},
        "rope-rmsnorm-swiglu": dict(**LLAMA, n_inner=hidden),
        "rope-rmsnorm-swiglu-gqa2": dict(**LLAMA, n_kv_head=2, n_inner=hidden + round(saved / (3 * C))),
    }


@dataclass
class CompareRow:
    name: str
    fields: dict  # the GPTConfig fields that differ from the base
    params: int
    tokens_per_second: float
    final_val_loss: float
    best_val_loss: float
    bits_per_byte: float  # at the best validation loss
    curve: list[dict]  # {"tokens", "seconds", "val_loss"} at each evaluation


def read_models(path: str | Path) -> dict[str, dict]:
    """Models from a TOML file of tables, one per model: `[gpt2]`, `[llama]  position = "rope" ...`."""
    try:
        tables = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no models file {path}: pass a TOML file with one [name] table per model") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML ({err}): fix the line it names") from None
    if not tables or not all(isinstance(t, dict) for t in tables.values()):
        raise ValueError(f"{path} needs one [name] table per model, e.g. [llama] with position = \"rope\"")
    return tables


def parse_model(spec: str) -> tuple[str, dict]:
    """`NAME:field=value,field=value` (a flag) -> (NAME, fields), values as TOML reads them."""
    name, _, settings = spec.partition(":")
    if not name:
        raise ValueError(f"--model {spec!r} has no name: write NAME or NAME:field=value,field=value")
    fields = {}
    for item in filter(None, settings.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--model {spec!r}: {item!r} is not field=value")
        try:
            fields[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            fields[key.strip()] = value.strip()  # a bare word such as rope: a string
    return name, fields


def model_configs(base: dict, models: dict[str, dict], vocab_size: int) -> dict[str, GPTConfig]:
    """Each model's config (checked before anything trains, so a typo costs no training time)."""
    configs = {}
    for name, fields in models.items():
        try:
            configs[name] = GPTConfig.from_dict({**base, **fields, "vocab_size": vocab_size})
        except ValueError as err:
            raise ValueError(f"model {name}: {err}") from None
    return configs


def compare(
    backend: Backend,
    models: dict[str, dict],
    train_config: TrainConfig,
    settings: DataSettings,
    out_dir: str | Path,
    base: dict | None = None,
    log=print,
) -> list[CompareRow]:
    """Train each of `models` (name -> GPTConfig fields over `base`) and write compare.md, compare.json and
    compare.png into `out_dir` (each model's run folder goes under it)."""
    out = Path(out_dir)
    base = DEFAULT_BASE if base is None else base
    max_bytes = int(settings.max_data_mb * 1e6) if settings.max_data_mb else None
    data = prepare_dataset(settings.data, tokenizer_kind=settings.tokenizer, vocab_size=settings.vocab_size,
                           max_bytes=max_bytes)  # fmt: skip
    configs = model_configs(base, models, data.tokenizer.vocab_size)
    val_bytes = len(data.tokenizer.decode([int(t) for t in data.val]).encode("utf-8"))
    tokens_per_byte = len(data.val) / max(val_bytes, 1)
    log(f"corpus: {data.description}; {len(data.train):,} training tokens; {len(configs)} models on {backend.name}")
    rows = []
    for name, config in configs.items():
        log(f"{name}: {count_params(config):,} parameters")
        tokens_per_step = train_config.batch_size * train_config.grad_accum * config.block_size
        start, stamps = time.perf_counter(), {}

        def stamp(model, step: int, stamps=stamps, start=start) -> str:  # called at each evaluation
            stamps[step] = time.perf_counter() - start
            return ""

        result = train(backend, config, train_config, data, out / name, sample=stamp, log=lambda _: None,
                       progress=False)  # fmt: skip
        if result.stopped == "interrupted":  # Ctrl-C stops the comparison, not just this model's run
            raise KeyboardInterrupt
        curve = [
            {"tokens": r["step"] * tokens_per_step, "seconds": round(stamps.get(r["step"], math.nan), 2),
             "val_loss": r["val_loss"]}
            for r in read_metrics(out / name / "metrics.jsonl") if "val_loss" in r
        ]  # fmt: skip
        row = CompareRow(
            name=name,
            fields=models[name],
            params=count_params(config),
            tokens_per_second=result.tokens_per_second,
            final_val_loss=result.last_val.get("loss", math.nan),
            best_val_loss=result.best_val_loss,
            bits_per_byte=result.best_val_loss / math.log(2) * tokens_per_byte,
            curve=curve,
        )
        log(f"  val loss {row.final_val_loss:.4f} (best {row.best_val_loss:.4f}), {row.tokens_per_second:,.0f} tok/s")
        rows.append(row)
    write_results(rows, out, backend, train_config, base, data.description)
    return rows


def write_results(rows: list[CompareRow], out: Path, backend: Backend, tc: TrainConfig, base: dict,
                  corpus: str) -> None:  # fmt: skip
    """compare.json (everything), compare.md (the table) and compare.png (the curves)."""
    out.mkdir(parents=True, exist_ok=True)
    setup = {"backend": backend.name, "device": backend.device, "versions": backend.versions(), "corpus": corpus,
             "base": base, "train": tc.to_dict()}  # fmt: skip
    (out / "compare.json").write_text(json.dumps({**setup, "rows": [vars(r) for r in rows]}, indent=2) + "\n")
    lines = [
        f"Architectures compared on {corpus}: {backend.name} on {backend.device}, {tc.steps} steps of "
        f"{tc.batch_size} x {base.get('block_size')} tokens, seed {tc.seed}, base {base}.",
        "",
        "| model | options | params | tokens/s | final val loss | best val loss | bits per byte |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        options = ", ".join(f"{k}={v}" for k, v in r.fields.items()) or "GPT-2 (defaults)"
        lines.append(f"| {r.name} | {options} | {r.params:,} | {r.tokens_per_second:,.0f} | {r.final_val_loss:.4f} | "
                     f"{r.best_val_loss:.4f} | {r.bits_per_byte:.4f} |")  # fmt: skip
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    fig, (by_tokens, by_time) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120, sharey=True)
    for r in rows:
        by_tokens.plot([p["tokens"] for p in r.curve], [p["val_loss"] for p in r.curve], marker="o", label=r.name)
        by_time.plot([p["seconds"] for p in r.curve], [p["val_loss"] for p in r.curve], marker="o", label=r.name)
    by_tokens.set_xlabel("training tokens")
    by_time.set_xlabel("wall time (s, evaluations included)")
    by_tokens.set_ylabel("validation loss (nats / token)")
    for ax in (by_tokens, by_time):
        ax.grid(alpha=0.3)
    by_tokens.legend()
    fig.suptitle(f"Validation loss by architecture ({backend.name}, same data, tokens and seed)")
    fig.tight_layout()
    fig.savefig(out / "compare.png")
    plt.close(fig)
