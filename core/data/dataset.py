"""From text to token arrays: load the corpus, train the tokenizer, tokenize once, cache on disk.

`prepare_dataset` is the one call the training script makes: it loads the corpus (`core.data.corpus`),
splits it by document, trains the tokenizer on the training split, and tokenizes both splits into
flat arrays with `<|endoftext|>` between documents (nanoGPT's `train.bin` / `val.bin`). The trained
tokenizer and both token arrays are cached under `cache_dir`, keyed by a hash of their inputs, so
a second run on the same data skips BPE training and tokenizing (on the default corpus: about
15 s the first time, under 1 s after, on 2 CPU cores).

Batches cut from these arrays are in `core.data.batches`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.corpus import load_corpus, split_documents
from core.data.tokenizer import SPECIAL_TOKENS, Tokenizer, tokenizer_from_json, train_tokenizer

DEFAULT_CACHE_DIR = Path(".cache") / "data"  # relative to the working directory; git ignores .cache/
ENCODE_CHUNK_CHARS = 4_000_000  # characters per encode_batch call: fast, without holding every id as a Python int


def token_dtype(vocab_size: int) -> type[np.unsignedinteger]:
    """uint16 when every id fits (vocab_size <= 65536), else uint32: half the disk and memory."""
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def encode_documents(docs: Sequence[str], tokenizer: Tokenizer) -> np.ndarray:
    """All documents as one flat array of ids, `eot_id` between consecutive documents."""
    dtype = token_dtype(tokenizer.vocab_size)
    eot = np.array([tokenizer.eot_id], dtype=dtype)
    parts: list[np.ndarray] = []
    start = 0
    while start < len(docs):
        end, chars = start, 0
        while end < len(docs) and (end == start or chars + len(docs[end]) <= ENCODE_CHUNK_CHARS):
            chars += len(docs[end])
            end += 1
        for ids in tokenizer.encode_batch(docs[start:end]):
            if parts:
                parts.append(eot)
            parts.append(np.array(ids, dtype=dtype))
        start = end
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _digest(docs: Sequence[str], *labels: str) -> str:
    """sha256 of some labels and the documents' content, with lengths so boundaries count too."""
    h = hashlib.sha256()
    for part in (*labels, *docs):
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


def _write_atomically(path: Path, write) -> None:
    # Write beside the target, then rename: a run killed mid-write never leaves a half file that
    # the next run would trust.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; the cache is ordinary data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_tokens(docs: Sequence[str], tokenizer: Tokenizer, cache_dir: str | Path) -> np.ndarray:
    """`encode_documents`, stored as `.npy` in `cache_dir` and memory-mapped (read-only) from there.

    The key is a hash of the documents' content and the tokenizer's JSON: any change to either
    makes a new file; an unchanged pair is read back in well under a second.
    """
    path = Path(cache_dir) / f"tokens-{_digest(docs, 'tokens', tokenizer.to_json())}.npy"
    if not path.exists():
        tokens = encode_documents(docs, tokenizer)
        _write_atomically(path, lambda f: np.save(f, tokens))
    tokens = np.load(path, mmap_mode="r")
    assert tokens.dtype == token_dtype(tokenizer.vocab_size), f"unexpected dtype {tokens.dtype} in {path}"
    return tokens


def cached_tokenizer(kind: str, texts: Sequence[str], vocab_size: int, cache_dir: str | Path | None) -> Tokenizer:
    """`train_tokenizer`, stored in `cache_dir` keyed by the texts, the kind and the vocabulary size."""
    if cache_dir is None:
        return train_tokenizer(kind, texts, vocab_size)
    key = _digest(texts, "tokenizer", kind, str(vocab_size), *SPECIAL_TOKENS)
    path = Path(cache_dir) / f"tokenizer-{kind}-{key}.json"
    if path.exists():
        return tokenizer_from_json(path.read_text(encoding="utf-8"))
    tokenizer = train_tokenizer(kind, texts, vocab_size)
    _write_atomically(path, lambda f: f.write(tokenizer.to_json().encode("utf-8")))
    return tokenizer


@dataclass
class Dataset:
    tokenizer: Tokenizer
    train: np.ndarray  # token ids of the training documents, eot_id between documents (uint16/uint32)
    val: np.ndarray  # token ids of the validation documents, same layout
    description: str  # the corpus in one line, e.g. "Python 3.11 standard library: 1,758 .py files, 31.5 MB"
    skip_summary: str  # the files left out, in one line ('' when none)


@dataclass
class DataSettings:
    """Where the text comes from and how it becomes tokens; stored in checkpoints for --resume."""

    data: str | None = None  # file, folder, "synthetic" or None (the standard library)
    tokenizer: str = "bpe"
    vocab_size: int = 8192
    max_data_mb: float | None = None
    reverse: bool = False  # a backward model: token streams read from the end


def prepare_dataset(
    data: str | Path | None = None,
    tokenizer_kind: str = "bpe",
    vocab_size: int = 8192,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    val_fraction: float = 0.1,
    tokenizer: Tokenizer | None = None,
    max_bytes: int | None = None,
) -> Dataset:
    """Corpus -> split -> tokenizer -> token arrays, each step cached under `cache_dir` (None: no cache).

    data / max_bytes: as `load_corpus`. tokenizer: use this one (e.g. from a checkpoint being
    resumed) instead of training one; `tokenizer_kind` and `vocab_size` are then ignored.
    A bpe tokenizer learns its merges from the training split only. A char tokenizer's alphabet is
    taken from both splits: it learns nothing from the text but its characters, and a character
    found only in validation would otherwise make the whole run fail.
    """
    corpus = load_corpus(data, max_bytes=max_bytes)
    train_docs, val_docs = split_documents(corpus, val_fraction)
    if tokenizer is None:
        texts = train_docs + val_docs if tokenizer_kind == "char" else train_docs
        tokenizer = cached_tokenizer(tokenizer_kind, texts, vocab_size, cache_dir)
    if cache_dir is None:
        train, val = encode_documents(train_docs, tokenizer), encode_documents(val_docs, tokenizer)
    else:
        train, val = cached_tokens(train_docs, tokenizer, cache_dir), cached_tokens(val_docs, tokenizer, cache_dir)
    return Dataset(
        tokenizer=tokenizer,
        train=train,
        val=val,
        description=corpus.description,
        skip_summary=corpus.skip_summary(),
    )
