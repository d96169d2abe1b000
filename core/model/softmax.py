"""Softmax, log-softmax and entropy in numpy: the one copy that the reference model, sampling,
scoring, metrics, masked-token prediction and attention maps all use.

Always float64 with the row maximum subtracted first, so exp never overflows and -inf logits get
probability exactly 0. Everything is along the last axis.
"""

from __future__ import annotations

import numpy as np


def softmax_parts(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shifted, e, z): logits minus their row max, exp of that, and its row sum (..., V), (..., V), (...).

    p = e / z and log p = shifted - log z; a caller that needs several of these (scoring needs the
    log-probability of the target and the entropy) computes the exponentials only once."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return shifted, e, e.sum(axis=-1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities (..., V) in float64."""
    _, e, z = softmax_parts(logits)
    return e / z[..., None]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities (..., V) in float64."""
    shifted, _, z = softmax_parts(logits)
    return shifted - np.log(z)[..., None]


def entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy in nats (...,) of probabilities (..., V), with 0 * log 0 taken as 0."""
    p = np.asarray(probs, dtype=np.float64)
    logp = np.log(np.where(p > 0, p, 1.0))  # log(1) = 0 where p = 0, so those terms vanish
    return -(p * logp).sum(axis=-1)


def entropy_from_parts(shifted: np.ndarray, e: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The entropy of softmax(logits) from `softmax_parts(logits)`: -sum p ln p = ln z - sum(e * shifted) / z.
    For finite logits (a model's); `entropy` handles probabilities of exactly 0."""
    return np.log(z) - np.einsum("...v,...v->...", e, shifted) / z
