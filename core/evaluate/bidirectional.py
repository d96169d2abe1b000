"""Bidirectional analysis: each word of a text seen from the left by a forward model and from the
right by a backward model (the same tokenizer, trained with `train --reverse`).

Words are the whitespace-separated pieces of the text. Each word owns the tokens of its piece: the
word with the one whitespace character before it (" word", as byte-level BPE splits running text;
any further whitespace before that belongs to no word but stays in the context). The text is
encoded piece by piece, so every word has exactly its own tokens, the same in both directions.

For each word, with ln P the summed log-probability of its tokens under teacher forcing:

    forward      ln P(word | everything to its left), the forward model reading left to right
    backward     ln P(word | everything to its right), the backward model reading right to left
    asymmetry    forward - backward (nats): > 0 where the left context predicts the word better
    neighbour    the same with one word of context only (the previous word for forward, the next
                 for backward, with the whitespace between), after `<|endoftext|>`
    gain         full context minus neighbour-only: what the rest of the text adds

Surprising words are improbable from both sides: ranked by the larger of the two log-probabilities
per token of the word, lowest first (per token, so that a long identifier is not surprising merely
for being long). By the chain rule, a perfect pair of models would give the whole text the same total
log-probability in both directions; the summary reports both totals.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from core.data.direction import BACKWARD, FORWARD
from core.data.tokenizer import Tokenizer
from core.evaluate.scoring import score_texts, score_windows
from core.model.interface import IGNORE_INDEX, Model


@dataclass
class Words:
    words: list[str]
    ids: list[int]  # the whole text's tokens, piece by piece
    spans: list[tuple[int, int]]  # each word's tokens: ids[start:end]


def split_words(text: str, tokenizer: Tokenizer) -> Words:
    """Encode `text` word piece by word piece (see the module docstring)."""
    words, ids, spans = [], [], []
    position = 0
    for match in re.finditer(r"\S+", text):
        gap = text[position : match.start()]
        if len(gap) > 1:
            ids += tokenizer.encode(gap[:-1])  # extra whitespace: context, not part of the word
        piece = gap[-1:] + match.group()
        start = len(ids)
        ids += tokenizer.encode(piece)
        words.append(match.group())
        spans.append((start, len(ids)))
        position = match.end()
    if len(text) > position:
        ids += tokenizer.encode(text[position:])
    if not words:
        raise ValueError("the text has no words: pass some text with --text or --file")
    return Words(words, ids, spans)


def _word_logprobs(token_logprobs: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    return np.array([token_logprobs[a:b].sum() for a, b in spans])


def _neighbour_logprobs(model: Model, words: Words, eot_id: int, direction: str, batch_size: int) -> np.ndarray:
    """ln P(word | one neighbouring word) for every word, batched (one short window per word)."""
    windows = []
    block = model.config.block_size
    for i, (a, b) in enumerate(words.spans):
        if direction == FORWARD:
            context = words.ids[words.spans[i - 1][0] : a] if i > 0 else []
            read, target = [eot_id, *context, *words.ids[a:b]], words.ids[a:b]
        else:
            context = words.ids[b : words.spans[i + 1][1]] if i + 1 < len(words.spans) else []
            target = words.ids[a:b][::-1]
            read = [eot_id, *context[::-1], *target]
        read = read[-(block + 1) :]
        inputs = np.array(read[:-1], dtype=np.int64)
        targets = np.full(len(inputs), IGNORE_INDEX, dtype=np.int64)
        targets[-len(target) :] = target
        windows.append((inputs, targets))
    return np.array([s.logprob.sum() for s in score_windows(model, windows, batch_size)])


def analyze_bidirectional(
    forward_model: Model,
    backward_model: Model,
    tokenizer: Tokenizer,
    text: str,
    stride: int | None = None,
    batch_size: int = 16,
) -> dict:
    """Per-word forward and backward log-probabilities, neighbour-only ones, and a summary."""
    words = split_words(text, tokenizer)
    fwd_tokens = score_texts(forward_model, [words.ids], tokenizer.eot_id, FORWARD, stride, batch_size)[0]
    bwd_tokens = score_texts(backward_model, [words.ids], tokenizer.eot_id, BACKWARD, stride, batch_size)[0]
    fwd = _word_logprobs(fwd_tokens.logprob, words.spans)
    bwd = _word_logprobs(bwd_tokens.logprob, words.spans)
    fwd_near = _neighbour_logprobs(forward_model, words, tokenizer.eot_id, FORWARD, batch_size)
    bwd_near = _neighbour_logprobs(backward_model, words, tokenizer.eot_id, BACKWARD, batch_size)
    rows = [
        {
            "index": i,
            "word": w,
            "tokens": b - a,
            "forward_logprob": float(fwd[i]),
            "backward_logprob": float(bwd[i]),
            "forward_prob": math.exp(fwd[i]),
            "backward_prob": math.exp(bwd[i]),
            "asymmetry": float(fwd[i] - bwd[i]),
            "forward_neighbour_logprob": float(fwd_near[i]),
            "backward_neighbour_logprob": float(bwd_near[i]),
            "forward_gain": float(fwd[i] - fwd_near[i]),
            "backward_gain": float(bwd[i] - bwd_near[i]),
        }
        for i, (w, (a, b)) in enumerate(zip(words.words, words.spans))
    ]
    return {"words": rows, "summary": _summary(rows, fwd_tokens.logprob.sum(), bwd_tokens.logprob.sum())}


def _summary(rows: list[dict], total_forward: float, total_backward: float) -> dict:
    f = np.array([r["forward_logprob"] for r in rows])
    b = np.array([r["backward_logprob"] for r in rows])
    n = len(rows)
    return {
        "words": n,
        "mean_forward_logprob": float(f.mean()),
        "mean_backward_logprob": float(b.mean()),
        "forward_better_share": float((f > b).mean()),  # words the left context predicts better
        "mean_abs_asymmetry": float(np.abs(f - b).mean()),
        "correlation": float(np.corrcoef(f, b)[0, 1]) if n > 1 and f.std() > 0 and b.std() > 0 else float("nan"),
        "mean_forward_gain": float(np.mean([r["forward_gain"] for r in rows])),
        "mean_backward_gain": float(np.mean([r["backward_gain"] for r in rows])),
        "text_logprob_forward": float(total_forward),  # every token of the text, whitespace included
        "text_logprob_backward": float(total_backward),
    }


def surprise_key(row: dict) -> float:
    """The better direction's log-probability per token of the word (lower: more surprising)."""
    return max(row["forward_logprob"], row["backward_logprob"]) / row["tokens"]


def surprising(rows: list[dict], count: int = 10) -> list[dict]:
    """Words improbable in both directions, most surprising first (see `surprise_key`)."""
    return sorted(rows, key=surprise_key)[:count]


def format_report(result: dict, count: int = 10) -> str:
    s = result["summary"]
    lines = [
        f"words: {s['words']}; mean ln P: forward {s['mean_forward_logprob']:.3f}, "
        f"backward {s['mean_backward_logprob']:.3f} (nats)",
        f"left context predicts better for {s['forward_better_share']:.0%} of words; mean |asymmetry| "
        f"{s['mean_abs_asymmetry']:.3f}; correlation of forward and backward ln P {s['correlation']:.3f}",
        f"context gain over one neighbouring word: forward {s['mean_forward_gain']:.3f}, "
        f"backward {s['mean_backward_gain']:.3f} nats per word",
        f"whole text ln P: forward {s['text_logprob_forward']:.2f}, backward {s['text_logprob_backward']:.2f}",
        "",
        "most surprising words (improbable from both sides):",
        f"{'word':<20} {'P(left)':>9} {'P(right)':>9} {'asym':>7} {'P(prev only)':>12} {'P(next only)':>12}",
    ]
    for r in surprising(result["words"], count):
        lines.append(
            f"{r['word'][:20]:<20} {r['forward_prob']:>9.2e} {r['backward_prob']:>9.2e} {r['asymmetry']:>7.2f} "
            f"{math.exp(r['forward_neighbour_logprob']):>12.2e} {math.exp(r['backward_neighbour_logprob']):>12.2e}"
        )
    return "\n".join(lines)
