"""Scoring next-token predictions in numpy: loss, accuracy, perplexity, and a unigram baseline.

Backends return logits; everything computed from them lives here once, so both backends report
the same numbers from the same logits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from core.model.interface import IGNORE_INDEX, Model
from core.model.softmax import log_softmax


def token_scores(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-position negative log-likelihood and whether the argmax was right, for targets (B, T)."""
    targets = np.asarray(targets)
    log_probs = log_softmax(logits)
    nll = -np.take_along_axis(log_probs, np.maximum(targets, 0)[..., None], axis=-1)[..., 0]
    correct = log_probs.argmax(axis=-1) == targets
    return nll, correct


def evaluate_batches(model: Model, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean loss, next-token accuracy and perplexity over (x, y) batches, ignoring IGNORE_INDEX targets."""
    total_nll, total_correct, count = 0.0, 0, 0
    for x, y in batches:
        nll, correct = token_scores(model.logits(x), y)
        keep = np.asarray(y) != IGNORE_INDEX
        total_nll += float(nll[keep].sum())
        total_correct += int(correct[keep].sum())
        count += int(keep.sum())
    loss = total_nll / max(count, 1)
    return {"loss": loss, "accuracy": total_correct / max(count, 1), "perplexity": math.exp(min(loss, 700.0))}


def unigram_loss(train_tokens: np.ndarray, val_tokens: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy on `val_tokens` of token frequencies counted on `train_tokens` (add-one smoothed):
    what a model that ignores context entirely would score."""
    counts = np.bincount(np.asarray(train_tokens, dtype=np.int64), minlength=vocab_size).astype(np.float64) + 1.0
    log_probs = np.log(counts / counts.sum())
    return float(-log_probs[np.asarray(val_tokens, dtype=np.int64)].mean())
