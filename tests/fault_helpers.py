"""What the fault tests share: a tiny run's flags, a finished run to copy, and small checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import train_next_word_prediction as cli

ROOT = Path(__file__).resolve().parents[1]
# A run small enough for a test: synthetic text, character tokenizer, the demo model, many evaluations.
TINY = ["--backend", "torch", "--data", "synthetic", "--tokenizer", "char", "--preset", "demo", "--batch-size", "4",
        "--eval-every", "5", "--eval-batches", "2", "--warmup-steps", "5", "--no-progress", "--sample-tokens", "4"]


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file below `folder`, by relative path: equal snapshots mean nothing was touched."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["train_loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def one_error_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def train_in_process(run: Path, steps: int, *extra: str) -> int:
    return cli.main([*TINY, "--steps", str(steps), "--out", str(run), *extra])
