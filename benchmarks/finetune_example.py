"""The README's worked fine-tuning example: one base model, fine-tuned on new text with LoRA and fully.

    python -m benchmarks.finetune_example              # trains the base first if runs/finetune-example/base is missing

1. The base: the command line's default run (2 layers, 64 dims, BPE 8192) on the built-in corpus
   (Python's standard library source), with torch.
2. The new text: English prose instead of Python, on every machine with this checkout: README.md and
   docs/*.md, cut between paragraphs into documents of about 1,500 characters (so the validation split,
   chosen by a hash of each document's name, gets several of them), written to runs/finetune-example/text/.
3. Fine-tuning runs from the base on that text, with the same steps, batches and seed: LoRA (`--lora-rank 8`,
   adapters on c_attn and both c_proj) and full fine-tuning at the same learning rate, and LoRA at 10x it.

Reported per run: validation loss on the new text before (the base, on the same validation batches the
run evaluates) and after; validation loss on the base's own corpus after (what it forgot); trainable
parameters; the size of the weights file and of the whole `last` checkpoint on disk; wall time of the
command and training tokens/s. Results: benchmarks/results/finetune-example.json and .md.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends import get_backend  # noqa: E402
from benchmarks.common import machine  # noqa: E402
from core.data.batches import eval_batches  # noqa: E402
from core.data.dataset import prepare_dataset  # noqa: E402
from core.data.tokenizer import tokenizer_from_json  # noqa: E402
from core.evaluate.metrics import evaluate_batches  # noqa: E402
from core.model.lora import LoraConfig, count_trainable  # noqa: E402
from core.model.params import count_params  # noqa: E402
from core.train.checkpoint import ADAPTERS_FILE, MODEL_FILE, load_checkpoint  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FOLDER = Path("runs/finetune-example")  # relative to the repository root, where the commands run
CLI = "train_next_word_prediction.py"
BASE = f"{CLI} --backend torch --steps 300 --no-progress --out {FOLDER}/base"
# The same for both fine-tuning runs; eval_batches/batch_size/seed decide the validation batches below.
TUNE = (f"{CLI} --backend torch --init-from {FOLDER}/base --data {FOLDER}/text --steps 150 --batch-size 16 "
        "--lr 1e-3 --min-lr 1e-4 --warmup-steps 15 --eval-every 50 --eval-batches 4 --seed 1337 --no-progress")
LORA = "--lora-rank 8 --lora-alpha 16 --lora-targets c_attn,c_proj"
# Run name -> its command. LoRA is usually given a larger learning rate than full fine-tuning (its B starts
# at zero and its updates are few numbers): the third run is LoRA at 10x the rate, otherwise the same.
RUNS = {
    "LoRA": f"{TUNE} {LORA} --out {FOLDER}/lora",
    "full": f"{TUNE} --out {FOLDER}/full",
    "LoRA, lr 1e-2": f"{TUNE.replace('--lr 1e-3 --min-lr 1e-4', '--lr 1e-2 --min-lr 1e-3')} {LORA} "
                     f"--out {FOLDER}/lora-lr1e-2",
}
EVAL = {"batch_size": 16, "eval_batches": 4, "seed": 1337}  # as TUNE says


def write_text(out: Path, chunk_chars: int = 1500) -> dict:
    """README.md and docs/*.md as documents of about `chunk_chars` characters, cut between paragraphs."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sources = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    n = 0
    for source in sources:
        chunks = [""]
        for paragraph in re.split(r"\n\n+", source.read_text()):
            if len(chunks[-1]) > chunk_chars:
                chunks.append("")
            chunks[-1] += paragraph + "\n\n"
        for i, chunk in enumerate(chunks):
            (out / f"{source.stem}-{i:03d}.md").write_text(chunk)
            n += 1
    return {"sources": [str(s.relative_to(ROOT)) for s in sources], "documents": n,
            "bytes": sum(len(s.read_bytes()) for s in sources)}


def run(command: str) -> float:
    """Run a command line of the CLI from the repository root; its wall time in seconds."""
    print(f"$ python {command}", flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, *shlex.split(command)], cwd=ROOT, check=True)
    return time.perf_counter() - start


def validation_loss(checkpoint, data_path: str | None) -> float:
    """Mean loss on the validation batches a run on `data_path` evaluates (same windows, same seed)."""
    tokenizer = tokenizer_from_json(checkpoint.tokenizer_json)
    data = prepare_dataset(data_path, tokenizer=tokenizer)
    batches = eval_batches(data.val, checkpoint.config.block_size, EVAL["batch_size"], EVAL["eval_batches"],
                           EVAL["seed"])
    model = get_backend("torch").build(checkpoint.config, checkpoint.params)
    return evaluate_batches(model, batches)["loss"]


def out_folder(command: str) -> str:
    return command.split("--out ")[1].split()[0]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    results: dict = {"commands": {"base": f"python {BASE}", **{k: f"python {v}" for k, v in RUNS.items()}}}
    base_time = None
    if not (ROOT / FOLDER / "base" / "checkpoints").is_dir():
        base_time = run(BASE)
    results["text"] = write_text(ROOT / FOLDER / "text")
    for command in RUNS.values():
        shutil.rmtree(ROOT / out_folder(command), ignore_errors=True)
    base = load_checkpoint(ROOT / FOLDER / "base", "best")
    text = str(ROOT / FOLDER / "text")
    base_corpus = base.meta.run_settings.get("data")  # None: the built-in corpus
    before = {"new_text": validation_loss(base, text), "base_corpus": validation_loss(base, base_corpus)}
    results["base"] = {"parameters": count_params(base.config), "val_loss": before, "train_wall_s": base_time,
                       "weights_bytes": (base.path / MODEL_FILE).stat().st_size}
    for name, command in RUNS.items():
        wall = run(command)
        folder = ROOT / out_folder(command)
        tuned = load_checkpoint(folder, "last")
        lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        lora = LoraConfig.from_dict(tuned.meta.lora) if tuned.meta.lora else None
        weights = tuned.path / (ADAPTERS_FILE if lora else MODEL_FILE)
        results[name] = {
            "trainable_parameters": count_trainable(tuned.config, lora) if lora else count_params(tuned.config),
            "val_loss_new_text": {"before": before["new_text"], "after": lines[-1]["val_loss"],
                                  "best": min(r["val_loss"] for r in lines if "val_loss" in r)},
            "val_loss_base_corpus_after": validation_loss(tuned, base_corpus),
            "weights_file": weights.name, "weights_bytes": weights.stat().st_size,
            "last_checkpoint_bytes": folder_bytes(tuned.path),
            "wall_s": round(wall, 1),
            "tokens_per_second": round(sum(r["tokens_per_second"] for r in lines[-10:]) / 10),
            "steps": tuned.step,
        }
    results["machine"] = {**machine(), "load_average": [round(x, 2) for x in os.getloadavg()]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "finetune-example.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "finetune-example.md").write_text(report(results))
    print(report(results))
    return 0


def report(r: dict) -> str:
    names = list(RUNS)
    runs = [r[n] for n in names]

    def row(label: str, cell) -> str:
        return f"| {label} | " + " | ".join(cell(x) for x in runs) + " |"

    m = r["machine"]
    lines = [
        "# Fine-tuning example: LoRA and full fine-tuning of one base model on new text",
        "",
        f"Base: {r['base']['parameters']:,} parameters, the default run on the built-in corpus "
        f"(`{r['commands']['base']}`). New text: {', '.join(r['text']['sources'])} "
        f"({r['text']['bytes'] / 1e3:.0f} kB, cut into {r['text']['documents']} documents). Validation loss of the "
        f"base before fine-tuning: {r['base']['val_loss']['new_text']:.3f} on the new text, "
        f"{r['base']['val_loss']['base_corpus']:.3f} on its own corpus.",
        "",
        "| | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
        row("trainable parameters", lambda x: f"{x['trainable_parameters']:,}"),
        row("validation loss on the new text, after", lambda x: f"{x['val_loss_new_text']['after']:.3f}"),
        row("validation loss on the base's corpus, after", lambda x: f"{x['val_loss_base_corpus_after']:.3f}"),
        row("weights file of the checkpoint", lambda x: f"{x['weights_file']}, {x['weights_bytes'] / 1e3:,.1f} kB"),
        row("whole `last` checkpoint (AdamW, tokenizer)", lambda x: f"{x['last_checkpoint_bytes'] / 1e3:,.1f} kB"),
        row("wall time of the command", lambda x: f"{x['wall_s']:.0f} s"),
        row("training tokens/s (last 10 steps)", lambda x: f"{x['tokens_per_second']:,}"),
        "",
        "Commands (from the repository root):",
        "",
        "```bash",
        *r["commands"].values(),
        "```",
        "",
        f"Written by `python -m benchmarks.finetune_example` on {m['cpu']} ({m['cpus']} CPUs, load average "
        f"{m['load_average'][0]} at the end), commit {m['commit']}; wall times are of a shared machine and vary "
        "with its load.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
