"""The training loop, shared by both backends.

The core owns everything here: batches (a pure function of the seed and the step, so both backends
see the same data and a resumed run sees what the uninterrupted one would have), the learning-rate
schedule, evaluation, samples, checkpoints, metrics and interrupts. The backend only runs
`train_step` and `logits`.

Resuming: a run stopped at step k (Ctrl-C, SIGTERM, or `--steps k`) saves `last` with the weights,
AdamW state and step; `--resume` rebuilds the model from it and continues with batch k, so on the
same backend and device the losses match the uninterrupted run step for step.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from core.data.dataset import BatchPrefetcher, Dataset, eval_batches
from core.data.masking import mlm_batch
from core.evaluate.metrics import evaluate_batches
from core.model.config import GPTConfig, TrainConfig
from core.model.interface import Backend, Model
from core.model.params import init_params
from core.train.checkpoint import Checkpoint, list_checkpoints, save_checkpoint
from core.train.durable import write_durably
from core.train.meta import CheckpointMeta
from core.train.schedule import learning_rate


@dataclass
class TrainResult:
    steps_done: int  # optimizer steps completed in total (including those before a resume)
    stopped: str  # "finished", "interrupted", "early stopping" or "non-finite loss"
    last_val: dict = field(default_factory=dict)  # metrics of the last evaluation
    best_val_loss: float = math.inf
    tokens_per_second: float = 0.0
    run_dir: Path | None = None


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so the current step finishes and is saved."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.signal_name is not None:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class MetricsLog:
    """metrics.jsonl: one JSON object per line; on resume, lines after the resumed step are dropped.

    The kept lines are written to a temporary file that replaces the old one, so a crash (or a full
    disk) during the rewrite leaves the old file whole. A last line cut short by a kill is dropped.
    """

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is not None and path.exists():
            lines = path.read_text().splitlines()
            kept = [line for i, line in enumerate(lines) if _step_of(line, i == len(lines) - 1, path) <= resume_step]
            write_durably(path, "".join(line + "\n" for line in kept).encode())
        elif path.exists():
            raise ValueError(f"{path} exists: a new run refuses to overwrite it (choose another --out)")

    def write(self, record: dict, sync: bool = False) -> None:
        """Append one line; `sync` flushes it to disk (before a checkpoint that must not run ahead of it)."""
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            if sync:
                f.flush()
                os.fsync(f.fileno())


def _step_of(line: str, last: bool, path: Path) -> float:
    """The step a metrics line records; a damaged last line (cut by a kill) counts as after every step."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        if last:
            return math.inf
        raise ValueError(f"{path} has a damaged line ({line[:40]!r}): repair or remove it, then resume") from None


def train(
    backend: Backend,
    config: GPTConfig,
    train_config: TrainConfig,
    data: Dataset,
    run_dir: str | Path,
    resume: Checkpoint | None = None,
    meta: CheckpointMeta | None = None,
    sample: Callable[[Model, int], str] | None = None,
    log: Callable[[str], None] = tqdm.write,
    progress: bool = True,
    keep_checkpoints: int = 3,
) -> TrainResult:
    """Train `config` on `data` until `train_config.steps`, an interrupt, early stopping or a bad loss.

    `meta` is stored in every checkpoint (data settings, the command that resumes). `sample(model,
    step)` returns a short text shown at each evaluation. With several data-parallel processes
    (`backend.world_size` > 1) each draws its own batches from the shared seeded stream, and only
    rank 0 evaluates, logs and writes files.
    """
    run_dir = Path(run_dir)
    tc, rank, world = train_config, backend.rank, backend.world_size
    lead = rank == 0
    if not lead:
        log = lambda text: None  # noqa: E731  (one voice: rank 0 speaks for all processes)
    backend.manual_seed(tc.seed)
    params = resume.params if resume else init_params(config, seed=tc.seed)
    model = backend.build(config, params, tc)
    start, best_val, evals_without_gain = 0, math.inf, 0
    if resume is not None:
        model.load_optimizer_state(resume.optimizer_state)
        start, best_val = resume.step, float(resume.meta.best_val_loss)
        evals_without_gain = resume.meta.evals_without_gain
    if lead:
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics = MetricsLog(run_dir / "metrics.jsonl", start if resume else None)
    tokens_per_step = tc.batch_size * tc.grad_accum * config.block_size * world  # global, all processes
    val_batches = eval_batches(data.val, config.block_size, tc.batch_size, tc.eval_batches, tc.seed)
    if tc.objective == "mlm":  # the same windows with fixed masks, so evaluations stay comparable
        mask_id = data.tokenizer.mask_id
        val_batches = [mlm_batch(x, tc.seed + 1, i, mask_id, config.vocab_size) for i, (x, _) in enumerate(val_batches)]
    result = TrainResult(steps_done=start, stopped="finished", best_val_loss=best_val, run_dir=run_dir)

    def checkpoint(step: int, name: str, val: dict, with_optimizer: bool) -> None:
        record = (meta or CheckpointMeta()).replace(
            step=step,
            tokens_seen=step * tokens_per_step,
            val_loss=val.get("loss"),
            best_val_loss=best_val,
            evals_without_gain=evals_without_gain,
            train_config=tc.to_dict(),
            world_size=world,
            backend=backend.name,
            device=backend.device,
            versions=backend.versions(),
        )
        state = model.optimizer_state() if with_optimizer else None
        weights = Checkpoint(config, model.params(), record, data.tokenizer.to_json(), state)
        save_checkpoint(run_dir / "checkpoints" / name, weights)

    def evaluate(step: int, loss: float) -> tuple[dict, bool]:
        """Validation metrics and a sample (rank 0 only); whether the loss is the best so far."""
        nonlocal best_val, evals_without_gain
        val = evaluate_batches(model, val_batches)
        improved = val["loss"] < best_val
        best_val = min(best_val, val["loss"])
        evals_without_gain = 0 if improved else evals_without_gain + 1
        log(
            f"step {step}: train loss {loss:.4f}, val loss {val['loss']:.4f}, "
            f"val accuracy {val['accuracy']:.3f}, val perplexity {val['perplexity']:.2f}"
        )
        if sample is not None:
            log(f"  sample: {sample(model, step)!r}")
        return val, improved

    def save_evaluation(step: int, val: dict, improved: bool) -> None:
        """The checkpoints of an evaluation step. `last` goes last: a crash before it resumes from the
        previous `last` and redoes this evaluation, so `last` never records a best loss `best` lacks."""
        if improved:
            checkpoint(step, "best", val, with_optimizer=False)
        checkpoint(step, f"step-{step:06d}", val, with_optimizer=False)
        checkpoint(step, "last", val, with_optimizer=True)
        steps = [c for c in list_checkpoints(run_dir) if c["name"].startswith("step-")]
        for old in steps[: max(0, len(steps) - keep_checkpoints)]:
            for path in (run_dir / "checkpoints").glob(f"{old['name']}*"):
                shutil.rmtree(path, ignore_errors=True)

    bar = tqdm(total=tc.steps, initial=start, disable=not (progress and lead), unit="step", dynamic_ncols=True)
    window_tokens, window_start = 0, time.perf_counter()
    # Rank r of W takes batches (s*W + r)*A ... at step s: one stream, split without overlap.
    first_batch, stride = (start * world + rank) * tc.grad_accum, tc.grad_accum * world
    prefetcher = BatchPrefetcher(
        data.train, config.block_size, tc.batch_size, tc.seed, first_batch, grad_accum=tc.grad_accum, stride=stride
    )
    with StopRequest() as stop, prefetcher as batches:
        for step in range(start, tc.steps):
            lr = learning_rate(step, tc)
            x, y = next(batches)  # (grad_accum, batch_size, block_size)
            if tc.objective == "mlm":  # fill in hidden tokens instead of predicting the next ones
                x, y = mlm_batch(x, tc.seed, step * world + rank, mask_id, config.vocab_size)
            loss = model.train_step(x, y, lr)  # averaged over processes, so every rank sees the same
            if not math.isfinite(loss):
                log(
                    f"stopping: the training loss became {loss} at step {step + 1} (try a lower --lr); "
                    f"the last good checkpoint is kept in {run_dir / 'checkpoints'}"
                )
                result.stopped = "non-finite loss"
                break
            result.steps_done = done = step + 1
            window_tokens += tokens_per_step
            elapsed = time.perf_counter() - window_start
            result.tokens_per_second = window_tokens / elapsed if elapsed > 0 else 0.0
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{result.tokens_per_second:,.0f}")
            record = {"step": done, "train_loss": loss, "lr": lr, "tokens_per_second": result.tokens_per_second}
            evaluating = done % tc.eval_every == 0 or done == tc.steps
            stopping = backend.any_rank(stop.signal_name is not None)
            if evaluating and lead:
                val, improved = evaluate(done, loss)
                result.last_val, result.best_val_loss = val, best_val
                record.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_perplexity=val["perplexity"])
            if lead:  # the step's line is on disk before any checkpoint of it: metrics never lag `last`
                metrics.write(record, sync=evaluating or stopping)
            if evaluating and lead:
                save_evaluation(done, val, improved)
                window_tokens, window_start = 0, time.perf_counter()  # evaluation time is not training time
            if backend.any_rank(bool(tc.patience) and evals_without_gain >= tc.patience):
                log(f"early stopping: no better validation loss in {tc.patience} evaluations")
                result.stopped = "early stopping"
                break
            if stopping:
                if lead and not evaluating:
                    checkpoint(done, "last", result.last_val, with_optimizer=True)
                log(f"{stop.signal_name or 'stop'}: saved step {done} to {run_dir / 'checkpoints' / 'last'}")
                result.stopped = "interrupted"
                break
    bar.close()
    return result
