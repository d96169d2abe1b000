"""Pictures of a run, drawn with matplotlib without a display (the Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no window, works on a server
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_training_curve(metrics_path: str | Path, png_path: str | Path, baseline: float | None = None) -> Path:
    """Train and validation loss against steps, with the unigram baseline as a dashed line."""
    records = read_metrics(metrics_path)
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    if train:
        ax.plot(*zip(*train), lw=1, alpha=0.7, label="train loss")
    if val:
        ax.plot(*zip(*val), marker="o", lw=2, label="validation loss")
    if baseline is not None:
        ax.axhline(baseline, ls="--", color="grey", label=f"unigram baseline ({baseline:.2f})")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title("Training curve")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)
