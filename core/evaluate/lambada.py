"""LAMBADA-style word prediction: the last word of a passage, given everything before it.

Input: a JSONL file, one object per line with a `text` field (LAMBADA's own format). The target is
the last whitespace-separated word of `text`, together with the one whitespace character before it
(" word", as lm-evaluation-harness splits `text.rsplit(" ", 1)`); the context is everything before.
Context and target are encoded separately, so the target's tokens are exactly the word's.

Scoring follows lm-evaluation-harness: the model reads `<|endoftext|>`, the context and the target
(teacher forcing); the target is *predicted* only if every one of its tokens is the argmax at its
position. Contexts longer than the model's window keep their last tokens (the target always fits).

    accuracy     share of passages whose target is predicted
    perplexity   exp(mean over passages of -ln P(target)): a per-word perplexity, lm-eval's number
    token ppl    exp(total target NLL / total target tokens)

Breakdowns: whether the target word occurs in the context (compared as lower-case words stripped of
surrounding punctuation), single- versus multi-token targets, and the length of the context in
tokens (the whole context; the model sees at most its last `block_size - target tokens`, and the
JSON records that number too, as `context_seen`).

`reverse=True` is the mirror task for a backward model: the target is the *first* word, with the one
whitespace character before it when the passage starts with whitespace (passages cut from running
text by `passages_from_text` do, so the word has the tokens it has in running text), and the context
is the rest of the passage; the model reads the passage from its end.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.direction import BACKWARD, FORWARD
from core.data.tokenizer import Tokenizer
from core.evaluate.scoring import score_windows
from core.model.context import crop_context
from core.model.interface import IGNORE_INDEX, Model

CONTEXT_BUCKETS = (0, 16, 32, 64, 128, 256, 512)  # left edges, in context tokens


@dataclass
class Example:
    context: str
    target: str  # with its whitespace: " word" (forward) or "word" (reverse)
    word: str  # the target without whitespace


def split_example(text: str, reverse: bool = False) -> Example:
    """Context and target of one passage (see the module docstring)."""
    if reverse:
        match = re.match(r"(\s*)(\S+)(.*)$", text, flags=re.DOTALL)
        if not match or not match.group(3).strip():
            raise ValueError(f"passage {text[:40]!r} needs at least two words")
        space, word, rest = match.groups()
        return Example(context=rest.rstrip(), target=space[-1:] + word, word=word)
    match = re.match(r"(.*\S)(\s+)(\S+)\s*$", text, flags=re.DOTALL)
    if not match:
        raise ValueError(f"passage {text[:40]!r} needs at least two words")
    context, space, word = match.groups()
    # The last whitespace character goes with the word (" word"), as byte-level BPE splits running text.
    return Example(context=context + space[:-1], target=space[-1] + word, word=word)


def read_jsonl(path: str | Path) -> list[str]:
    """The `text` field of every line of a JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}: pass a JSONL file with a 'text' field per line")
    texts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n} is not JSON ({err.msg}): write one object per line") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError(f'{path}:{n} has no string field \'text\': write objects like {{"text": "..."}}')
        texts.append(record["text"])
    if not texts:
        raise ValueError(f"{path} holds no passages: write one JSON object with a 'text' field per line")
    return texts


def passages_from_text(text: str, count: int = 200, words: int = 40, seed: int = 0) -> list[str]:
    """LAMBADA-style passages cut from a plain text: `count` runs of `words` words (whitespace and
    line breaks kept, and the one whitespace character before the first word), at seeded random
    places, for trying the task on one's own text."""
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    if len(spans) <= words:
        raise ValueError(f"the text has {len(spans)} words: passages of {words} words need more text")
    rng = random.Random(seed)
    starts = sorted(rng.sample(range(len(spans) - words), min(count, len(spans) - words)))
    return [text[max(0, spans[s][0] - 1) : spans[s + words - 1][1]] for s in starts]


def _bare(word: str) -> str:
    return word.strip(string.punctuation + "“”‘’«»").lower()


def in_context(example: Example) -> bool:
    target = _bare(example.word)
    return bool(target) and target in {_bare(w) for w in example.context.split()}


def _bucket(n: int) -> str:
    edges = CONTEXT_BUCKETS
    i = max(j for j, edge in enumerate(edges) if n >= edge)
    return f"{edges[i]}-{edges[i + 1] - 1}" if i + 1 < len(edges) else f"{edges[i]}+"


def score_examples(
    model: Model,
    tokenizer: Tokenizer,
    texts: list[str],
    direction: str = FORWARD,
    batch_size: int = 16,
    progress: bool = False,
) -> list[dict]:
    """One record per passage: target, its tokens, log-probability, whether predicted, breakdown keys.

    `direction` is the model's: forward predicts the last word, backward the first."""
    block = model.config.block_size
    reverse = direction == BACKWARD
    examples = [split_example(t, reverse) for t in texts]
    windows, meta = [], []
    for ex in examples:
        ctx, tgt = tokenizer.encode(ex.context), tokenizer.encode(ex.target)
        if not tgt:
            raise ValueError(f"target {ex.target!r} encodes to no tokens")
        if len(tgt) > block - 1:
            raise ValueError(f"target {ex.word!r} has {len(tgt)} tokens, more than block_size - 1 = {block - 1}")
        if reverse:  # read from the end: the context reversed, then the target reversed
            ctx, tgt_read = ctx[::-1], tgt[::-1]
        else:
            tgt_read = tgt
        seq = [tokenizer.eot_id, *ctx, *tgt_read]
        seq, _ = crop_context(seq, block + 1)  # inputs and targets: the far end of the context goes, the target stays
        inputs = np.array(seq[:-1], dtype=np.int64)
        targets = np.full(len(inputs), IGNORE_INDEX, dtype=np.int64)
        targets[-len(tgt) :] = tgt_read
        windows.append((inputs, targets))
        meta.append((ex, len(tgt), min(len(ctx), block + 1 - len(tgt)), len(ctx)))  # seen: after cropping
    scored = score_windows(model, windows, batch_size, progress, desc="lambada")
    records = []
    for (ex, n_target, seen, n_context), s in zip(meta, scored):
        records.append(
            {
                "word": ex.word,
                "target_tokens": n_target,
                "context_tokens": n_context,
                "context_seen": seen,
                "logprob": float(s.logprob.sum()),
                "predicted": bool(s.correct.all()),
                "in_context": in_context(ex),
                "bucket": _bucket(n_context),
            }
        )
    return records


def _stats(records: list[dict]) -> dict:
    n = len(records)
    if n == 0:
        return {"count": 0}
    logprobs = np.array([r["logprob"] for r in records])
    tokens = sum(r["target_tokens"] for r in records)
    return {
        "count": n,
        "accuracy": float(np.mean([r["predicted"] for r in records])),
        "perplexity": math.exp(min(float(-logprobs.mean()), 700.0)),
        "token_perplexity": math.exp(min(float(-logprobs.sum() / tokens), 700.0)),
    }


def summarize(records: list[dict]) -> dict:
    """Overall accuracy and perplexities, and the same per breakdown group."""
    groups = {
        "target in context": [r for r in records if r["in_context"]],
        "target not in context": [r for r in records if not r["in_context"]],
        "single-token target": [r for r in records if r["target_tokens"] == 1],
        "multi-token target": [r for r in records if r["target_tokens"] > 1],
    }
    buckets = sorted({r["bucket"] for r in records}, key=lambda b: int(b.split("-")[0].rstrip("+")))
    for b in buckets:
        groups[f"context {b} tokens"] = [r for r in records if r["bucket"] == b]
    return {"overall": _stats(records), "breakdown": {name: _stats(rs) for name, rs in groups.items()}}


def format_summary(summary: dict) -> str:
    lines = [f"{'':<28} {'count':>6} {'accuracy':>9} {'perplexity':>11} {'token ppl':>10}"]
    for name, s in [("overall", summary["overall"]), *summary["breakdown"].items()]:
        if s["count"]:
            numbers = f"{s['accuracy']:>9.3f} {s['perplexity']:>11.4g} {s['token_perplexity']:>10.4g}"
            lines.append(f"{name:<28} {s['count']:>6} {numbers}")
    return "\n".join(lines)
