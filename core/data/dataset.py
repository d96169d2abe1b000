"""From text to training batches: tokenize once, cache on disk, cut random windows.

`prepare_dataset` is the one call the training script makes: it loads the corpus (`core.data.corpus`),
splits it by document, trains the tokenizer on the training split, and tokenizes both splits into
flat arrays with `<|endoftext|>` between documents (nanoGPT's `train.bin` / `val.bin`). The trained
tokenizer and both token arrays are cached under `cache_dir`, keyed by a hash of their inputs, so
a second run on the same data skips BPE training and tokenizing (on the default corpus: about
15 s the first time, under 1 s after, on 2 CPU cores).

Batches are a pure function of `(seed, index)`: `get_batch` seeds its own
`numpy.random.Generator` with both, so the torch and tinygrad backends see identical batches and a
run resumed at step k draws exactly the batches an uninterrupted run would have. Optimizer step s
with `grad_accum` A uses batch indices s*A .. s*A+A-1; `get_step_batch` and `BatchPrefetcher`
always return arrays shaped (A, B, T), A = 1 included, so the training loop has one code path.
"""

from __future__ import annotations

import hashlib
import os
import queue
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.corpus import Corpus, load_corpus, split_documents
from core.data.tokenizer import SPECIAL_TOKENS, Tokenizer, tokenizer_from_json, train_tokenizer

__all__ = [
    "Corpus", "load_corpus", "split_documents", "Dataset", "prepare_dataset", "encode_documents", "cached_tokens",
    "cached_tokenizer", "check_length", "get_batch", "get_step_batch", "BatchPrefetcher", "eval_batches",
]  # fmt: skip

DEFAULT_CACHE_DIR = Path(".cache") / "data"  # relative to the working directory; git ignores .cache/
ENCODE_CHUNK_CHARS = 4_000_000  # characters per encode_batch call: fast, without holding every id as a Python int
EVAL_STREAM = 1  # third seed word for validation batches, so they never share a stream with training batches


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
    train_documents: int  # number of documents in each split
    val_documents: int

    @property
    def train_tokens(self) -> int:
        return len(self.train)

    @property
    def val_tokens(self) -> int:
        return len(self.val)

    def summary(self) -> str:
        tok = self.tokenizer
        return (
            f"{self.description}; {self.train_documents:,} train / {self.val_documents:,} val documents, "
            f"{self.train_tokens:,} / {self.val_tokens:,} tokens ({tok.kind} tokenizer, vocab {tok.vocab_size:,})"
        )


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
        train_documents=len(train_docs),
        val_documents=len(val_docs),
    )


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name}={value!r} is invalid: use a positive integer")


def check_length(tokens: np.ndarray, block_size: int, split_name: str) -> None:
    """Raise ValueError unless `tokens` holds at least one window of block_size + 1 tokens."""
    _check_positive(block_size=block_size)
    n = len(tokens)
    if n < block_size + 1:
        fix = f"use block_size={n - 1} or less, or more text" if n >= 2 else "use more text"
        raise ValueError(
            f"the {split_name} split has {n:,} tokens, but block_size={block_size} needs at least "
            f"{block_size + 1:,}: {fix} (a larger file or folder; for validation, also a larger val_fraction)"
        )


def _windows(tokens: np.ndarray, block_size: int, batch_size: int, rng: np.random.Generator):
    # Start positions uniform over every full window, as nanoGPT's get_batch.
    starts = rng.integers(0, len(tokens) - block_size, size=batch_size)
    windows = np.asarray(tokens[starts[:, None] + np.arange(block_size + 1)], dtype=np.int64)  # (B, T+1)
    # Contiguous copies: both frameworks take them without another copy.
    return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])  # (B, T), (B, T)


def _check_batch_args(tokens: np.ndarray, block_size: int, batch_size: int, seed: int) -> None:
    check_length(tokens, block_size, "given")
    _check_positive(batch_size=batch_size)
    if seed < 0:
        raise ValueError(f"seed={seed} is invalid: use 0 or a positive integer")


def get_batch(
    tokens: np.ndarray, block_size: int, batch_size: int, seed: int, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Batch number `index`: inputs x and targets y, int64 (batch_size, block_size), y being x shifted
    by one (y[:, t] is the token that follows x[:, t]). A pure function of (tokens, seed, index)."""
    _check_batch_args(tokens, block_size, batch_size, seed)
    return _windows(tokens, block_size, batch_size, np.random.default_rng([seed, index]))


def _stacked(tokens, block_size, batch_size, seed, first_index, count) -> tuple[np.ndarray, np.ndarray]:
    pairs = [get_batch(tokens, block_size, batch_size, seed, first_index + a) for a in range(count)]
    return np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs])  # (A, B, T) each


def get_step_batch(
    tokens: np.ndarray, block_size: int, batch_size: int, seed: int, step: int, grad_accum: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The micro-batches of optimizer step `step`: batch indices step*A .. step*A+A-1, stacked (A, B, T)."""
    _check_positive(grad_accum=grad_accum)
    return _stacked(tokens, block_size, batch_size, seed, step * grad_accum, grad_accum)


class BatchPrefetcher:
    """Endless iterator over (x, y) shaped (grad_accum, batch_size, block_size), made ahead in a thread.

    Item k holds batches start_index + k*A .. start_index + k*A + A-1 (A = grad_accum), exactly as
    `get_batch` makes them. `start_index` counts batches, not steps: to resume at optimizer step s,
    pass start_index = s * grad_accum; item k is then `get_step_batch(..., step=s + k)`.
    A daemon thread keeps up to `depth` items ready so the accelerator does not wait on numpy.
    Stop it with `close()` or by using it as a context manager; an error in the thread is raised by
    the next `next()`.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        block_size: int,
        batch_size: int,
        seed: int,
        start_index: int = 0,
        depth: int = 4,
        grad_accum: int = 1,
        stride: int | None = None,
    ) -> None:
        _check_batch_args(tokens, block_size, batch_size, seed)
        _check_positive(depth=depth, grad_accum=grad_accum)
        if start_index < 0:
            raise ValueError(f"start_index={start_index} is invalid: use 0 or a positive batch index")
        self._args = (tokens, block_size, batch_size, seed)
        self.grad_accum = grad_accum
        # Batch indices between consecutive items: A alone, A * world_size when data-parallel ranks
        # interleave (rank r of W takes batches (s*W + r)*A .. (s*W + r)*A + A-1 at step s).
        self.stride = stride or grad_accum
        self.next_index = start_index  # batch index of the first micro-batch of the next item handed out
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._work, args=(start_index,), name="BatchPrefetcher", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        # A bounded wait, so a full queue never keeps the thread from seeing close().
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def _work(self, index: int) -> None:
        try:
            while self._put(_stacked(*self._args, index, self.grad_accum)):
                index += self.stride
        except BaseException as e:  # handed to the consumer, who raises it
            self._put(e)

    def __iter__(self) -> BatchPrefetcher:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        if self._closed:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, BaseException):
            self.close()
            raise item
        self.next_index += self.stride
        return item

    def close(self) -> None:
        """Stop the thread and drop the batches prepared ahead. Safe to call twice."""
        self._closed = True
        self._stop.set()
        while True:  # unblock a thread waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5.0)

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def eval_batches(
    tokens: np.ndarray, block_size: int, batch_size: int, n_batches: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n_batches` validation batches (x, y), each (batch_size, block_size): the same on every call
    with the same arguments, so successive evaluations measure the model, not the sample."""
    _check_batch_args(tokens, block_size, batch_size, seed)
    _check_positive(n_batches=n_batches)
    rngs = [np.random.default_rng([seed, i, EVAL_STREAM]) for i in range(n_batches)]
    return [_windows(tokens, block_size, batch_size, rng) for rng in rngs]
