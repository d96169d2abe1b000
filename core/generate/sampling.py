"""Choosing the next token from last-position logits, in numpy, the same way for every backend.

A backend hands back float32 logits (B, V); everything after that happens here, in float64, with
a seeded `numpy.random.Generator`. Two backends whose logits agree to float32 round-off therefore
draw the same tokens (unless a draw lands within round-off of a boundary between two tokens).

The distribution a token is drawn from is built in Hugging Face's order:

    logits / temperature  ->  keep the top_k largest  ->  keep the smallest nucleus of mass top_p

`temperature == 0` means greedy decoding: the most likely token (the lowest id among exact ties),
no random draw; top_k and top_p cannot change that choice and are ignored. A draw is one uniform
number per row mapped through the inverse cumulative distribution, so the number of draws, and
therefore the generator's state afterwards, does not depend on the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np

from core.model.softmax import entropy, softmax

Generators = np.random.Generator | Sequence[np.random.Generator]


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy; 1 = the model's own distribution; >1 flatter, <1 sharper
    top_k: int | None = None  # keep only the k most likely tokens (ties with the k-th are kept too)
    top_p: float | None = None  # keep the smallest set of most likely tokens whose probability reaches p

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, Real) or not t >= 0 or t == float("inf"):
            raise ValueError(f"temperature={t!r} is invalid: use 0 (greedy) or a positive number such as 0.8")
        k = self.top_k
        if k is not None and (isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1):
            raise ValueError(f"top_k={k!r} is invalid: use a positive integer such as 40, or None for no limit")
        p = self.top_p
        if p is not None and (isinstance(p, bool) or not isinstance(p, Real) or not 0 < p <= 1):
            raise ValueError(f"top_p={p!r} is invalid: use a probability in (0, 1] such as 0.9, or None")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class TokenStats:
    """Per-token statistics of one sampling call, each an array (B,)."""

    prob: np.ndarray  # probability of the chosen token under the model: softmax(logits), unfiltered
    sample_prob: np.ndarray  # its probability under the distribution it was drawn from (1 when greedy)
    rank: np.ndarray  # int: tokens the model rates strictly more likely (0 = the most likely)
    entropy: np.ndarray  # entropy in nats of the distribution it was drawn from (0 when greedy)
    model_entropy: np.ndarray  # entropy in nats of the model's distribution softmax(logits)

    def as_dicts(self) -> list[dict[str, float | int]]:
        """One plain dict per row (JSON-friendly Python numbers)."""
        return [
            {
                "prob": float(self.prob[i]),
                "sample_prob": float(self.sample_prob[i]),
                "rank": int(self.rank[i]),
                "entropy": float(self.entropy[i]),
                "model_entropy": float(self.model_entropy[i]),
            }
            for i in range(len(self.prob))
        ]


def _check_logits(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"logits must have shape (batch, vocab_size), got {x.shape}")
    if np.isnan(x).any() or np.isposinf(x).any():
        raise ValueError("logits contain NaN or +inf: the model's output is not finite")
    if np.isneginf(x.max(axis=-1)).any():
        raise ValueError("a row of logits is entirely -inf: no token can be chosen")
    return x


def sampling_probs(logits: np.ndarray, config: SamplingConfig) -> np.ndarray:
    """The distribution (B, V) that tokens are drawn from: temperature, then top-k, then top-p.

    Greedy (temperature 0) gives a one-hot row at the argmax.
    """
    x = _check_logits(logits)
    B, V = x.shape
    if config.greedy:
        probs = np.zeros_like(x)
        probs[np.arange(B), x.argmax(axis=-1)] = 1.0
        return probs
    x = x / config.temperature
    if config.top_k is not None and config.top_k < V:
        # The k-th largest value per row; everything below it is dropped (ties with it stay, as in
        # nanoGPT and Hugging Face), so at least k tokens remain.
        kth = np.partition(x, V - config.top_k, axis=-1)[:, V - config.top_k, None]
        x = np.where(x >= kth, x, -np.inf)
    probs = softmax(x)
    if config.top_p is not None and config.top_p < 1:
        # Sort each row from most to least likely (a stable sort: equal probabilities keep id order),
        # keep a token while the mass before it is still short of top_p. The token that reaches
        # top_p is kept, and so is the most likely one even when it alone exceeds top_p.
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
        keep_sorted = mass_before < config.top_p
        keep_sorted[:, 0] = True
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        probs = np.where(keep, probs, 0.0)
        probs = probs / probs.sum(axis=-1, keepdims=True)
    return probs


def _uniforms(rng: Generators | None, B: int) -> np.ndarray:
    if rng is None:
        raise ValueError("sampling with temperature > 0 needs a numpy random Generator (e.g. np.random.default_rng(0))")
    if isinstance(rng, np.random.Generator):
        return rng.random(B)
    if len(rng) != B:
        raise ValueError(f"got {len(rng)} random generators for {B} rows: pass one per row or a single one")
    return np.array([g.random() for g in rng])


def draw(probs: np.ndarray, rng: Generators | None) -> np.ndarray:
    """One token per row of `probs` (B, V) by inverse transform sampling: one uniform draw per row.

    `rng` is one Generator (B draws in row order) or a sequence of B Generators (one draw from each).
    """
    B, V = probs.shape
    u = _uniforms(rng, B)
    cdf = np.cumsum(probs, axis=-1)
    # The first index whose cumulative mass exceeds u * total (= how many do not). A token of
    # probability 0 has the same cumulative mass as the one before it, so it is never the first.
    tokens = (cdf <= (u * cdf[:, -1])[:, None]).sum(axis=-1)
    # Guard against u * total rounding up to the total: fall back to the last token with mass.
    last = V - 1 - np.argmax(probs[:, ::-1] > 0, axis=-1)
    return np.minimum(tokens, last).astype(np.int64)


def token_stats(logits: np.ndarray, probs: np.ndarray, tokens: np.ndarray) -> TokenStats:
    """Statistics of `tokens` (B,) chosen from `probs` (B, V), the sampling distribution of `logits`."""
    x = _check_logits(logits)
    rows = np.arange(x.shape[0])
    model = softmax(x)
    chosen = x[rows, tokens]
    return TokenStats(
        prob=model[rows, tokens],
        sample_prob=np.asarray(probs, dtype=np.float64)[rows, tokens],
        rank=(x > chosen[:, None]).sum(axis=-1).astype(np.int64),
        entropy=entropy(probs),
        model_entropy=entropy(model),
    )


def sample(logits: np.ndarray, config: SamplingConfig, rng: Generators | None = None) -> np.ndarray:
    """Next tokens (B,) int64 for logits (B, V). `rng` may be None only when greedy."""
    if config.greedy:
        return _check_logits(logits).argmax(axis=-1).astype(np.int64)  # no draw: the rng is untouched
    return draw(sampling_probs(logits, config), rng)


def sample_with_stats(
    logits: np.ndarray, config: SamplingConfig, rng: Generators | None = None
) -> tuple[np.ndarray, TokenStats]:
    """`sample` plus the statistics of each chosen token; draws exactly what `sample` draws."""
    probs = sampling_probs(logits, config)
    tokens = probs.argmax(axis=-1).astype(np.int64) if config.greedy else draw(probs, rng)
    return tokens, token_stats(logits, probs, tokens)
