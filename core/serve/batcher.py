"""Continuous batching: many requests decoded together, each joining and leaving at any step.

One worker thread owns the model (backends are not thread-safe); everything else talks to it
through a queue. The model holds a cache of S slots (`Model.slot_start`), each slot one sequence at
its own position. Every turn of the loop:

  1. admit waiting jobs into free slots (lowest free slot first): prefill the prompt, choose the first
     token; run any queued call (attention maps, prompt logits) between steps;
  2. drop jobs that were cancelled (their client left, or a stop string matched) and free their slots;
  3. one decode step for every active job at once: each feeds its last token at its own position.

So a request's tokens depend only on its own prompt and its own random generator, never on which
requests share the batch: the text a client gets alone is the text it gets batched (up to float
round-off, as in `core.generate`). Tokens are chosen exactly as `core.generate` chooses them: the
same `core.generate.sampling` calls, one generator per sequence seeded `seed + index`, one draw per token,
the same window rule past block_size (a fresh prefill of the last block_size tokens per step), and
the stop token counted towards `max_tokens` but not delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from core.generate.sampling import SamplingConfig, sample
from core.model.interface import Model
from core.model.softmax import log_softmax


@dataclass(frozen=True)
class Token:
    """One chosen token and what the model thought of it (log-probabilities of the model's softmax)."""

    id: int
    logprob: float | None = None  # None (and the rest too) when the job did not ask for logprobs
    rank: int | None = None  # tokens the model rated strictly more likely (0: its first choice)
    entropy: float | None = None  # entropy in nats of the model's distribution at this step
    top: list[tuple[int, float]] | None = None  # the `top_logprobs` most likely (id, logprob), likeliest first


@dataclass(frozen=True)
class Finished:
    reason: str  # "stop" (the stop token), "length" (max_tokens reached), "cancelled" (see Job.cancel) or "error"
    error: str | None = None  # set when the model failed on this job


@dataclass(eq=False)
class Job:
    """One sequence to continue; `deliver` receives its Tokens, then one Finished (on `loop`, or the worker)."""

    ids: list[int]  # the prompt, at most block_size - 1 tokens
    max_tokens: int
    sampling: SamplingConfig
    rng: np.random.Generator | None  # None when greedy
    deliver: Callable[[Token | Finished], None]
    # With a loop, `deliver` runs on that event loop, all of one step's events in one hand-over (see
    # Batcher._flush); without one, on the worker thread as each event happens.
    loop: asyncio.AbstractEventLoop | None = None
    top_logprobs: int | None = None  # alternatives to report per token; None: no logprobs at all
    stop_id: int | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    seq: list[int] = field(default_factory=list)  # prompt + chosen tokens (worker only)
    chosen: int = 0  # tokens chosen so far, the stop token included (worker only)

    def cancel(self) -> None:
        """Free this job's slot at the next step (safe from any thread)."""
        self.cancelled.set()


class Batcher:
    """The worker thread. With `decode=False` it only runs `call`s (a fill-mask model has no slot cache)."""

    def __init__(self, model: Model, slots: int = 8, decode: bool = True):
        if slots < 1:
            raise ValueError(f"slots={slots} is invalid: use at least 1")
        self.model, self.slots, self.decode = model, slots, decode
        self.block = model.config.block_size
        self.inbox: queue.Queue = queue.Queue()
        self.active: dict[int, Job] = {}  # slot -> job
        self.steps = 0  # decode steps run, for /health
        self._outbox: dict[asyncio.AbstractEventLoop, list] = defaultdict(list)  # this turn's events, per loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)

    def start(self) -> Batcher:
        if self.decode:
            self.model.slot_start(self.slots)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.inbox.put(None)  # wake the worker
        self._thread.join(timeout=10)
        for job in self.active.values():  # nobody will decode them now: end them rather than leave clients waiting
            self._send(job, Finished("error", error="the server is shutting down"))
        self.active.clear()
        self._flush()

    def submit(self, job: Job) -> None:
        self.inbox.put(job)

    def call(self, fn: Callable[[], object]) -> Future:
        """Run `fn()` on the worker thread between steps (anything that touches the model)."""
        future: Future = Future()
        self.inbox.put((fn, future))
        return future

    @property
    def waiting(self) -> int:
        return self.inbox.qsize()

    # ---- the worker thread
    def _run(self) -> None:
        while not self._stop.is_set():
            self._admit(block=not self.active)
            for slot in [s for s, job in self.active.items() if job.cancelled.is_set()]:
                self._send(self.active.pop(slot), Finished("cancelled"))
            if self.active:
                self._step()
            self._flush()

    def _send(self, job: Job, event: Token | Finished) -> None:
        if job.loop is None:
            job.deliver(event)
        else:
            self._outbox[job.loop].append((job.deliver, event))

    def _flush(self) -> None:
        """Hand this turn's events to their event loops, one call per loop. Waking the loop once per
        token made it run (holding the GIL) between this thread's tokens, so each step's hand-over cost
        a few milliseconds at 8 rows (benchmarks/results/profile-serve-torch.md); woken once, the loop
        does its work while the next decode step computes (torch releases the GIL)."""
        for loop, events in self._outbox.items():
            with contextlib.suppress(RuntimeError):  # a loop closed at shutdown: nobody is listening
                loop.call_soon_threadsafe(_deliver_all, events)
        self._outbox = defaultdict(list)

    def _admit(self, block: bool) -> None:
        while len(self.active) < self.slots:
            try:
                item = self.inbox.get(timeout=0.5) if block else self.inbox.get_nowait()
            except queue.Empty:
                return
            block = False
            if item is None:
                return
            if isinstance(item, tuple):
                fn, future = item
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except Exception as err:  # the caller's error, reported to the caller
                        future.set_exception(err)
                continue
            if item.cancelled.is_set():
                self._send(item, Finished("cancelled"))
                continue
            slot = min(set(range(self.slots)) - set(self.active))
            item.seq = list(item.ids)
            self.active[slot] = item
            try:
                logits = self.model.slot_prefill(slot, np.array(item.seq))
            except Exception as err:  # a failing model ends this job with an error, never the server
                self._fail(slot, item, err)
                continue
            self._choose_many({slot: (item, logits)})

    def _step(self) -> None:
        """One decode step for every active job; a job past the window gets its own window prefill."""
        decoding = {s: j for s, j in self.active.items() if len(j.seq) <= self.block}
        sliding = {s: j for s, j in self.active.items() if len(j.seq) > self.block}
        logits: dict[int, np.ndarray] = {}
        if decoding:
            rows = max(decoding) + 1  # slots 0..rows-1; free ones among them are fed (0, 0)
            tokens, positions = np.zeros(rows, np.int64), np.zeros(rows, np.int64)
            for s, job in decoding.items():
                tokens[s], positions[s] = job.seq[-1], len(job.seq) - 1
            try:
                out = self.model.slot_decode(tokens, positions)  # (rows, V)
            except Exception as err:  # a failing model ends these jobs with an error, never the server
                for s, job in decoding.items():
                    self._fail(s, job, err)
                return
            logits.update({s: out[s] for s in decoding})
        for s, job in sliding.items():  # the window moved: every position shifts, so nothing cached helps
            try:
                logits[s] = self.model.slot_prefill(s, np.array(job.seq[-self.block :]))
            except Exception as err:
                self._fail(s, job, err)
        self.steps += 1
        self._choose_many({s: (self.active[s], logits[s]) for s in logits if s in self.active})

    def _fail(self, slot: int, job: Job, err: Exception) -> None:
        job.cancel()
        self.active.pop(slot, None)
        self._send(job, Finished("error", error=f"{type(err).__name__}: {err}"))

    def _choose_many(self, rows: dict[int, tuple[Job, np.ndarray]]) -> None:
        """Choose the next token of each job; jobs with equal settings are sampled in one call.

        `sample` draws exactly what `sample_with_stats` (and so `generate`) draws; the statistics are
        computed here only for jobs that asked for logprobs, from one log-softmax of the model's logits."""
        groups: dict[SamplingConfig, list[int]] = {}
        for slot, (job, _) in rows.items():
            groups.setdefault(job.sampling, []).append(slot)
        for config, slots in groups.items():
            x = np.stack([rows[s][1] for s in slots])  # (n, V)
            tokens = sample(x, config, None if config.greedy else [rows[s][0].rng for s in slots])
            for i, s in enumerate(slots):
                job, token = rows[s][0], int(tokens[i])
                self._record(s, job, _stats(x[i], token, job.top_logprobs) if job.top_logprobs is not None else
                             Token(token))

    def _record(self, slot: int, job: Job, token: Token) -> None:
        job.chosen += 1
        job.seq.append(token.id)
        if token.id == job.stop_id:
            self.active.pop(slot, None)
            self._send(job, Finished("stop"))
            return
        self._send(job, token)
        if job.chosen == job.max_tokens:
            self.active.pop(slot, None)
            self._send(job, Finished("length"))


def _deliver_all(events: list) -> None:
    for deliver, event in events:
        deliver(event)


def _stats(logits: np.ndarray, token: int, top: int) -> Token:
    """`token` with its log-probability, rank and the entropy under softmax(logits), and the `top` likeliest."""
    logp = log_softmax(logits)  # (V,) float64
    best = np.argsort(-logp, kind="stable")[:top] if top else []
    return Token(token, float(logp[token]), int((logits > logits[token]).sum()), float(-(np.exp(logp) * logp).sum()),
                 [(int(t), float(logp[t])) for t in best])
