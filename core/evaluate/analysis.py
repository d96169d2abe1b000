"""Token probability analysis: how likely each actual token of a text was, and where.

For every token of the text: its probability, its rank among all tokens (0: the model's first
choice) and the entropy of the distribution it was predicted from (high: the model was unsure
in general; low entropy with a low probability: the model was confidently wrong). The first token is
predicted from `<|endoftext|>` ("start of a document"), as in `core.evaluate.scoring`; a backward model
predicts each token from the text after it.

Spans: every run of `span` consecutive tokens is scored by its mean log-probability; the most and
least predictable are the highest and lowest such runs that do not overlap each other.

The same per-token data drives a table, JSON, a plot and a terminal view in which each token is
coloured by its probability (ANSI background colours; low probability in red stands out), or,
without colour, improbable tokens are bracketed: [[p < 1%]] and [p < 10%].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.data.direction import FORWARD
from core.data.tokenizer import Tokenizer
from core.evaluate.scoring import TokenScores, score_texts
from core.model.interface import Model

# Probability bands of the terminal view: (lower bound, ANSI background colour, black or white text)
BANDS = ((0.5, "42", "30"), (0.1, "102", "30"), (0.01, "43", "30"), (0.001, "41", "97"), (0.0, "45", "97"))
RESET = "\033[0m"


@dataclass
class TokenAnalysis:
    tokens: list[str]  # each token decoded on its own (a byte-level token may hold half a character)
    ids: list[int]
    scores: TokenScores  # in text order
    direction: str = FORWARD

    def rows(self) -> list[dict]:
        s = self.scores
        return [
            {
                "index": i,
                "id": self.ids[i],
                "token": self.tokens[i],
                "prob": float(math.exp(s.logprob[i])),
                "logprob": float(s.logprob[i]),
                "rank": int(s.rank[i]),
                "entropy": float(s.entropy[i]),
            }
            for i in range(len(self.ids))
        ]

    def spans(self, span: int = 5, count: int = 3) -> dict[str, list[dict]]:
        """The `count` most and least predictable non-overlapping runs of `span` tokens."""
        n = len(self.ids)
        span = max(1, min(span, n))
        if n == 0:
            return {"most_predictable": [], "least_predictable": []}
        means = np.convolve(self.scores.logprob, np.ones(span) / span, mode="valid")  # mean log-prob per start
        return {
            "most_predictable": self._pick(means, span, count, highest=True),
            "least_predictable": self._pick(means, span, count, highest=False),
        }

    def _pick(self, means: np.ndarray, span: int, count: int, highest: bool) -> list[dict]:
        order = np.argsort(-means if highest else means, kind="stable")
        taken: list[int] = []
        for start in order.tolist():
            if all(abs(start - other) >= span for other in taken):
                taken.append(start)
                if len(taken) == count:
                    break
        return [
            {
                "start": s,
                "end": s + span,
                "text": "".join(self.tokens[s : s + span]),
                "mean_logprob": float(means[s]),
                "geometric_mean_prob": float(math.exp(means[s])),
            }
            for s in taken
        ]

    def summary(self) -> dict:
        s = self.scores
        n = len(s)
        loss = float(s.nll.mean()) if n else 0.0
        return {
            "tokens": n,
            "direction": self.direction,
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)),
            "accuracy": float(s.correct.mean()) if n else 0.0,
            "mean_entropy": float(s.entropy.mean()) if n else 0.0,
        }

    def to_json(self, span: int = 5, count: int = 3) -> dict:
        return {"summary": self.summary(), "spans": self.spans(span, count), "tokens": self.rows()}


def analyze_text(
    model: Model,
    tokenizer: Tokenizer,
    text: str,
    direction: str = FORWARD,
    stride: int | None = None,
    batch_size: int = 16,
) -> TokenAnalysis:
    """Score every token of `text` (see the module docstring)."""
    if not text:
        raise ValueError("the text to analyze is empty: pass --text with some text or --file with a non-empty file")
    ids = tokenizer.encode(text)
    scores = score_texts(model, [ids], tokenizer.eot_id, direction, stride, batch_size)[0]
    return TokenAnalysis([tokenizer.decode([i]) for i in ids], ids, scores, direction)


def _shown(token: str) -> str:
    """A token as a table cell: repr without the quotes, so spaces and newlines are visible."""
    return repr(token)[1:-1]


def format_table(analysis: TokenAnalysis, limit: int | None = None, json_path: str | None = None) -> str:
    """One line per token: index, token, probability, rank, entropy, and a bar of -log2 p. Past `limit`
    rows, says how many more there are and where they all are (`json_path`, or the flag that writes it)."""
    rows = analysis.rows()
    shown = rows if limit is None or len(rows) <= limit else rows[:limit]
    lines = [f"{'#':>4}  {'token':<16} {'prob':>8} {'rank':>6} {'entropy':>7}  surprise (bits)"]
    for r in shown:
        bits = -r["logprob"] / math.log(2)
        lines.append(
            f"{r['index']:>4}  {_shown(r['token'])[:16]:<16} {r['prob']:8.4f} {r['rank']:>6} {r['entropy']:7.3f}  "
            f"{'#' * min(40, round(bits * 2))} {bits:.1f}"
        )
    if len(shown) < len(rows):
        where = f"all of them are in {json_path}" if json_path else "--rows N shows more; --json FILE writes all"
        lines.append(f"... {len(rows) - len(shown)} more tokens ({where})")
    return "\n".join(lines)


def format_spans(spans: dict[str, list[dict]]) -> str:
    lines = []
    for key, title in (("most_predictable", "most predictable"), ("least_predictable", "least predictable")):
        lines.append(f"{title} spans:")
        for s in spans[key]:
            lines.append(f"  tokens {s['start']}-{s['end'] - 1}  p~{s['geometric_mean_prob']:.3f}  {s['text']!r}")
    return "\n".join(lines)


def band(prob: float) -> int:
    """Index into BANDS of a probability (0: the most probable band)."""
    return next(i for i, (low, _, _) in enumerate(BANDS) if prob >= low)


def colour_view(analysis: TokenAnalysis, color: bool = True) -> str:
    """The text with each token marked by its probability (see the module docstring)."""
    out = []
    for token, logprob in zip(analysis.tokens, analysis.scores.logprob.tolist()):
        p = math.exp(logprob)
        if color:
            _, bg, fg = BANDS[band(p)]
            # Colour each line of a token separately, so a newline never drags a coloured background along.
            out.append("\n".join(f"\033[{fg};{bg}m{part}{RESET}" if part else "" for part in token.split("\n")))
        else:
            out.append(f"[[{token}]]" if p < 0.01 else f"[{token}]" if p < 0.1 else token)
    return "".join(out)


def colour_legend(color: bool = True) -> str:
    if not color:
        return "legend: [[token]] probability < 1%, [token] < 10%, other tokens unmarked"
    labels = ("p >= 50%", "10-50%", "1-10%", "0.1-1%", "< 0.1%")
    return "legend: " + " ".join(f"\033[{fg};{bg}m {label} {RESET}" for (_, bg, fg), label in zip(BANDS, labels))
