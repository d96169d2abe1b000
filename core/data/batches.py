"""Training and validation batches: random windows of a token stream, a pure function of the seed.

`get_batch` seeds its own `numpy.random.Generator` with `(seed, index)`, so the torch and tinygrad
backends see identical batches and a run resumed at step k draws exactly the batches an
uninterrupted run would have. Optimizer step s with `grad_accum` A uses batch indices
s*A .. s*A+A-1; `BatchPrefetcher` makes them ahead in a thread and always returns arrays shaped
(A, B, T), A = 1 included, so the training loop has one code path. `eval_batches` draws the fixed
validation batches from a stream of their own.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

EVAL_STREAM = 1  # third seed word for validation batches, so they never share a stream with training batches


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


class BatchPrefetcher:
    """Endless iterator over (x, y) shaped (grad_accum, batch_size, block_size), made ahead in a thread.

    Item k holds batches start_index + k*A .. start_index + k*A + A-1 (A = grad_accum), exactly as
    `get_batch` makes them. `start_index` counts batches, not steps: to resume at optimizer step s,
    pass start_index = s * grad_accum; item k then holds batches (s + k)*A .. (s + k)*A + A-1.
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
