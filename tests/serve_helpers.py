"""Shared by the serving tests: a tiny character-level checkpoint and a server on a free loopback port."""

from __future__ import annotations

from pathlib import Path

import train_next_word_prediction as cli


def train_tiny_run(out: Path, steps: int = 30, *flags: str) -> Path:
    """`steps` torch steps of the demo model (context 48) on the synthetic corpus, characters as tokens;
    `flags` add training flags (e.g. "--objective", "mlm")."""
    args = ["--backend", "torch", "--data", "synthetic", "--tokenizer", "char", "--preset", "demo", "--block-size",
            "48", "--steps", str(steps), "--eval-every", str(steps), "--eval-batches", "2", "--batch-size", "8",
            "--no-progress", "--out", str(out), *flags]
    assert cli.main(args) == 0
    return out


def start_server(run: Path, backend: str = "torch", slots: int = 8, fill_mask: bool = False):
    """(served, url, stop): the checkpoint served from a thread of this process; call stop() when done."""
    from backends import get_backend
    from core.serve.server import load, start_background

    served = load(get_backend(backend), str(run), slots=slots, fill_mask=fill_mask)
    uv, url = start_background(served)

    def stop() -> None:
        uv.should_exit = True
        served.batcher.close()

    return served, url, stop
