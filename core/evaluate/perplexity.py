"""Perplexity of a checkpoint on a text: per token, per sequence, for the whole data set.

The text is cut into sequences (`unit`): each file (`document`), each block of lines between blank
lines (`paragraph`) or each non-empty line (`line`). Every sequence is scored on its own, from the
`<|endoftext|>` that starts a document in training, with the sliding windows of `core.evaluate.scoring`
(every token scored exactly once). From the per-token negative log-likelihoods (nats):

    token level      each token's probability p and perplexity 1/p (their distribution is plotted)
    sequence level   exp(mean NLL of the sequence's tokens), one number per sequence (histogram)
    data-set level   exp(total NLL / total tokens): every token weighs the same, long sequences more
    accuracy         share of tokens that were the model's top choice (argmax)
    bits per byte    total NLL / ln 2 / UTF-8 bytes of the text: comparable across tokenizers,
                     since a tokenizer with longer tokens has fewer, harder predictions per byte

A backward model (`train --reverse`) is scored on each sequence read from its end, so its numbers
are those of predicting every token from the text after it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.data.corpus import load_corpus, split_documents
from core.data.direction import FORWARD
from core.data.tokenizer import EOT, Tokenizer
from core.evaluate.scoring import TokenScores, score_texts
from core.model.interface import Model

UNITS = ("document", "paragraph", "line")


@dataclass
class Sequences:
    names: list[str]  # where each sequence comes from, e.g. "notes.txt:12" (file and first line)
    texts: list[str]
    description: str  # one line: the data and how it was cut


def split_text(text: str, unit: str, name: str = "text") -> tuple[list[str], list[str]]:
    """Cut one document into sequences by `unit`; returns (names, texts), empty pieces left out.

    A document that contains the literal `<|endoftext|>` (GPT-2's separator in its data dumps)
    is first split there, in every unit."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}: choose one of {', '.join(UNITS)}")
    names, texts = [], []
    line_no = 1
    for part in text.split(EOT):
        if unit == "document":
            pieces = [(line_no, part)]
        elif unit == "line":
            pieces = [(line_no + i, line) for i, line in enumerate(part.split("\n"))]
        else:  # runs of non-blank lines
            pieces, run = [], []
            for i, line in enumerate([*part.split("\n"), ""]):
                if line.strip():
                    run.append(line)
                elif run:
                    pieces.append((line_no + i - len(run), "\n".join(run)))
                    run = []
        for first_line, piece in pieces:
            if piece.strip():
                names.append(f"{name}:{first_line}" if unit != "document" else name)
                texts.append(piece)
        line_no += part.count("\n")
    return names, texts


def load_sequences(
    data: str | None,
    unit: str = "document",
    max_tokens: int | None = None,
    tokenizer: Tokenizer | None = None,
    val_of: str | None = None,
) -> Sequences:
    """The sequences to evaluate: from `data` (a file, folder or 'synthetic', as `load_corpus`
    reads it), or with `data=None` the validation split of the corpus `val_of` names (None: the
    built-in corpus), i.e. the held-out part of what a checkpoint was trained on.

    `max_tokens` (with `tokenizer`) keeps sequences in order until that many tokens, the last one cut.
    """
    if data is None:
        corpus = load_corpus(val_of)
        _, val_docs = split_documents(corpus)
        # split_documents hands back the documents themselves (a single one is cut: its tail validates)
        val_ids = {id(doc) for doc in val_docs}
        doc_names = [n for n, doc in zip(corpus.names, corpus.documents) if id(doc) in val_ids]
        docs = val_docs
        if len(doc_names) != len(docs):
            doc_names = [f"{corpus.names[0]} (validation part)"] * len(docs)
        what = f"validation split of {corpus.description}"
    else:
        corpus = load_corpus(data)
        docs, doc_names, what = corpus.documents, corpus.names, corpus.description
    names, texts = [], []
    for doc_name, doc in zip(doc_names, docs):
        n, t = split_text(doc, unit, doc_name)
        names += n
        texts += t
    if not texts:
        raise ValueError(f"no text to evaluate in {what}: pass a file or folder with non-blank text")
    cut = ""
    if max_tokens is not None and tokenizer is not None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens={max_tokens} is invalid: use a positive number of tokens")
        kept, total = 0, 0
        for text in texts:
            if total >= max_tokens:
                break
            ids = tokenizer.encode(text)
            if total + len(ids) > max_tokens:
                texts[kept] = tokenizer.decode(ids[: max_tokens - total])
            total += len(ids)
            kept += 1
        names, texts = names[:kept], texts[:kept]
        cut = f", first {max_tokens:,} tokens"
    return Sequences(names, texts, f"{what}; {len(texts):,} {unit}s{cut}")


@dataclass
class Evaluation:
    names: list[str]
    texts: list[str]
    scores: list[TokenScores]  # per sequence, per token, in text order
    n_bytes: list[int]  # UTF-8 bytes of each sequence

    def all_scores(self) -> TokenScores:
        return TokenScores.concat(self.scores)

    def sequence_perplexities(self) -> np.ndarray:
        return np.array([math.exp(min(float(s.nll.mean()), 700.0)) for s in self.scores])

    def summary(self) -> dict:
        everything = self.all_scores()
        n_tokens, total_nll, n_bytes = len(everything), float(everything.nll.sum()), sum(self.n_bytes)
        loss = total_nll / max(n_tokens, 1)
        seq_ppl = self.sequence_perplexities()
        token_ppl = np.exp(np.minimum(everything.nll, 700.0))
        probs = everything.prob
        return {
            "sequences": len(self.scores),
            "tokens": n_tokens,
            "bytes": n_bytes,
            "loss": loss,  # mean NLL per token, nats
            "perplexity": math.exp(min(loss, 700.0)),  # data-set level
            "accuracy": float(everything.correct.mean()) if n_tokens else 0.0,
            "bits_per_token": loss / math.log(2),
            "bits_per_byte": total_nll / math.log(2) / max(n_bytes, 1),
            "token_perplexity": _quantiles(token_ppl),  # each token's 1/p
            "token_probability": {**_quantiles(probs), "mean": float(probs.mean()) if n_tokens else 0.0},
            "sequence_perplexity": {**_quantiles(seq_ppl), "mean": float(seq_ppl.mean())},
            "top_k_accuracy": {k: float((everything.rank < k).mean()) for k in (1, 5, 10)} if n_tokens else {},
        }

    def per_sequence(self) -> list[dict]:
        return [
            {
                "name": name,
                "tokens": len(s),
                "bytes": b,
                "loss": float(s.nll.mean()),
                "perplexity": float(ppl),
                "accuracy": float(s.correct.mean()),
            }
            for name, s, b, ppl in zip(self.names, self.scores, self.n_bytes, self.sequence_perplexities())
        ]


def _quantiles(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    q = np.quantile(values, [0.1, 0.5, 0.9])
    return {"p10": float(q[0]), "median": float(q[1]), "p90": float(q[2])}


def evaluate_texts(
    model: Model,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    names: Sequence[str] | None = None,
    direction: str = FORWARD,
    stride: int | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> Evaluation:
    """Score every token of every text (see the module docstring); `names` label the sequences."""
    token_lists = tokenizer.encode_batch(list(texts))
    scores = score_texts(model, token_lists, tokenizer.eot_id, direction, stride, batch_size, progress)
    names = list(names) if names is not None else [f"text {i}" for i in range(len(texts))]
    return Evaluation(names, list(texts), scores, [len(t.encode("utf-8")) for t in texts])


def format_summary(summary: dict) -> str:
    """The headline numbers as a few aligned lines."""
    s = summary
    rows = [
        ("sequences / tokens / bytes", f"{s['sequences']:,} / {s['tokens']:,} / {s['bytes']:,}"),
        ("loss (nats / token)", f"{s['loss']:.4f}"),
        ("perplexity (data set)", f"{s['perplexity']:.3f}"),
        ("perplexity (sequence median)", f"{s['sequence_perplexity'].get('median', float('nan')):.3f}"),
        ("perplexity (token median, 1/p)", f"{s['token_perplexity'].get('median', float('nan')):.3f}"),
        ("next-token accuracy", f"{s['accuracy']:.4f}"),
        ("top-5 accuracy", f"{s['top_k_accuracy'].get(5, 0.0):.4f}"),
        ("bits per token", f"{s['bits_per_token']:.4f}"),
        ("bits per byte", f"{s['bits_per_byte']:.4f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
