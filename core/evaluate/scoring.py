"""Scoring every token of a text with a model: log-probability, rank and entropy, batched.

Everything that asks "how likely was this token?" (evaluate, analyze, lambada, bidirectional)
goes through here, so all of them agree on what a score is:

- A text is scored as the model met text in training: after an `<|endoftext|>` token, the marker
  that precedes every document. So the first token of a text is scored too, from "start of a
  document" alone, and the scored tokens cover exactly the text's bytes (what bits per byte needs).
- A sequence longer than `block_size` is cut into overlapping windows that advance by `stride`
  tokens (the Hugging Face perplexity guide's sliding window): each window predicts only the tokens
  the previous windows have not scored, so every token is scored exactly once, and every token
  after the first window has at least `block_size - stride` tokens of context. `stride ==
  block_size` is the cheapest (no overlap, some tokens with little context); `stride == 1` gives
  every token the full `block_size` of context and costs one forward pass per token.
- Windows are batched `batch_size` at a time and right-padded to a few fixed lengths (powers of
  two up to `block_size`), with the last batch padded with dummy rows: right padding changes
  nothing before it (attention is causal), and fixed shapes let tinygrad compile once per shape.
- Log-probabilities and entropies come from the float32 logits in float64 numpy, computed as
  `core.model.softmax.log_softmax` does; ranks and argmax from the logits themselves (same order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from core.data.direction import FORWARD, to_model_order
from core.model.interface import IGNORE_INDEX, Model
from core.model.softmax import entropy_from_parts, softmax_parts


@dataclass
class TokenScores:
    """Per-token results for one sequence, each an array (n,) in the same order as the tokens."""

    logprob: np.ndarray  # ln P(token | context), float64
    rank: np.ndarray  # number of tokens the model rated strictly more likely (0: the top choice)
    entropy: np.ndarray  # entropy in nats of the predicted distribution the token was drawn against
    correct: np.ndarray  # bool: the token is the argmax (lowest id among exact ties, like numpy)

    @property
    def prob(self) -> np.ndarray:
        return np.exp(self.logprob)

    @property
    def nll(self) -> np.ndarray:
        return -self.logprob

    def __len__(self) -> int:
        return len(self.logprob)

    def reversed(self) -> TokenScores:
        return TokenScores(self.logprob[::-1], self.rank[::-1], self.entropy[::-1], self.correct[::-1])

    @staticmethod
    def concat(parts: Sequence[TokenScores]) -> TokenScores:
        if not parts:
            return TokenScores(np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool))
        return TokenScores(*(np.concatenate([getattr(p, f) for p in parts]) for f in TokenScores._fields()))

    @staticmethod
    def _fields() -> tuple[str, ...]:
        return ("logprob", "rank", "entropy", "correct")


def stride_windows(n_tokens: int, block_size: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows over a sequence of `n_tokens` tokens whose positions 1..n_tokens-1 are to be predicted.

    Each window is (start, end, first): the model reads tokens[start:end] (at most `block_size`) and
    its predictions score target positions first..end (position p predicted from tokens[start:p]).
    The windows' scored ranges are consecutive and cover 1..n_tokens-1 exactly once; the first
    window scores up to `block_size` targets, each later one `stride` (fewer at the end).
    """
    if not 1 <= stride <= block_size:
        raise ValueError(f"stride={stride} is invalid: use 1 .. block_size ({block_size})")
    windows = []
    done = 0  # targets 1..done are scored (position 0 has no context and is never a target)
    while done < n_tokens - 1:
        end = min(done + (stride if windows else block_size), n_tokens - 1)
        windows.append((max(0, end - block_size), end, done + 1))
        done = end
    return windows


def _padded_length(length: int, block_size: int) -> int:
    return min(block_size, 1 << max(0, length - 1).bit_length())


def score_windows(
    model: Model,
    windows: Sequence[tuple[np.ndarray, np.ndarray]],
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "scoring",
) -> list[TokenScores]:
    """Score each window (inputs, targets), both int (T,) with T <= block_size; targets equal to
    IGNORE_INDEX are not scored. Returns, per window, the scores of its scored positions in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is invalid: use a positive integer")
    batches = _plan_batches(windows, batch_size, model.config.block_size)
    results: list[TokenScores | None] = [None] * len(windows)
    for length, chunk in tqdm(batches, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True):
        x = np.zeros((batch_size, length), dtype=np.int64)  # (B, T): dummy rows and padding are id 0
        y = np.full((batch_size, length), IGNORE_INDEX, dtype=np.int64)
        for r, i in enumerate(chunk):
            inputs, targets = windows[i]
            x[r, : len(inputs)], y[r, : len(targets)] = inputs, targets
        scores = _score_batch(model.logits(x), y)
        for r, i in enumerate(chunk):
            keep = y[r] != IGNORE_INDEX
            results[i] = TokenScores(*(getattr(scores, f)[r][keep] for f in TokenScores._fields()))
    return results  # type: ignore[return-value]


def _plan_batches(windows, batch_size: int, block: int) -> list[tuple[int, list[int]]]:
    """(padded length, window indices) per batch. Windows are grouped by length rounded up to a power
    of two; what is left of a group after its full batches joins the next longer group, so at most
    one batch is partly empty and few shapes are used (each new shape costs tinygrad a compile)."""
    groups: dict[int, list[int]] = {}
    for i, (x, y) in enumerate(windows):
        if not 0 < len(x) <= block or len(y) != len(x):
            raise ValueError(f"window {i} has {len(x)} inputs and {len(y)} targets: use 1 .. {block} of each")
        groups.setdefault(_padded_length(len(x), block), []).append(i)
    batches, carry = [], []
    lengths = sorted(groups)
    for n, length in enumerate(lengths):
        rows = carry + groups[length]
        full = len(rows) - len(rows) % batch_size if n + 1 < len(lengths) else len(rows)
        batches += [(length, rows[b : min(b + batch_size, full)]) for b in range(0, full, batch_size)]
        carry = rows[full:]
    return batches


def _score_batch(logits: np.ndarray, targets: np.ndarray) -> TokenScores:
    """Scores of targets (B, T) under logits (B, T, V), as (B, T) arrays (ignored targets read id 0)."""
    # The exponentials are computed once (core.model.softmax) and shared by the log-probability and the
    # entropy: this numpy work costs more than a small model's forward pass.
    logits = np.asarray(logits, dtype=np.float32)
    shifted, e, z = softmax_parts(logits)  # (B, T, V), (B, T, V), (B, T)
    safe = np.maximum(targets, 0)[..., None]
    logprob = np.take_along_axis(shifted, safe, axis=-1)[..., 0] - np.log(z)  # (B, T)
    entropy = entropy_from_parts(shifted, e, z)  # (B, T)
    # Order is the same in the float32 logits as in the float64 log-probabilities.
    rank = (logits > np.take_along_axis(logits, safe, axis=-1)).sum(axis=-1)
    correct = logits.argmax(axis=-1) == targets
    return TokenScores(logprob, rank, entropy, correct)


def score_sequences(
    model: Model,
    sequences: Sequence[Sequence[int] | np.ndarray],
    stride: int | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> list[TokenScores]:
    """Scores of positions 1..n-1 of each sequence (n-1 tokens each), in model order, using
    `stride_windows` (stride None: half the block, as a balance of context and cost)."""
    block = model.config.block_size
    stride = max(1, block // 2) if stride is None else stride
    windows, owners = [], []
    for s, seq in enumerate(sequences):
        seq = np.asarray(seq, dtype=np.int64)
        for start, end, first in stride_windows(len(seq), block, stride):
            targets = seq[start + 1 : end + 1].copy()
            targets[: first - start - 1] = IGNORE_INDEX  # already scored by an earlier window
            windows.append((seq[start:end], targets))
            owners.append(s)
    scored = score_windows(model, windows, batch_size, progress)
    parts: list[list[TokenScores]] = [[] for _ in sequences]
    for s, scores in zip(owners, scored):
        parts[s].append(scores)
    return [TokenScores.concat(p) for p in parts]


def score_texts(
    model: Model,
    token_lists: Sequence[Sequence[int]],
    eot_id: int,
    direction: str = FORWARD,
    stride: int | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> list[TokenScores]:
    """Every token of each text (ids in text order) scored after `<|endoftext|>`, in text order.

    Forward: token i given the tokens before it. Backward: the model reads the text reversed, so
    token i is scored given the tokens after it; the scores are returned in text order all the same.
    """
    sequences = [[eot_id, *to_model_order(ids, direction)] for ids in token_lists]
    scores = score_sequences(model, sequences, stride, batch_size, progress)
    return scores if direction == FORWARD else [s.reversed() for s in scores]
