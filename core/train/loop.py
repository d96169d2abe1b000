"""The training loop, shared by both backends.

The core owns everything here: batches (a pure function of the seed and the step, so both backends
see the same data and a resumed run sees what the uninterrupted one would have), the learning-rate
schedule, evaluation, samples, checkpoints (`core.train.checkpoint`), the metrics file
(`core.train.metrics_log`) and interrupts (`core.train.signals`). The backend only runs
`train_step` and `logits`.

Resuming: a run stopped at step k (Ctrl-C, SIGTERM, or `--steps k`) saves `last` with the weights,
AdamW state and step; `--resume` rebuilds the model from it and continues with batch k, so on the
same backend and device the losses match the uninterrupted run step for step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.data.batches import BatchPrefetcher, eval_batches
from core.data.dataset import Dataset
from core.data.masking import mlm_batch
from core.evaluate.metrics import evaluate_batches
from core.model.config import GPTConfig, TrainConfig
from core.model.interface import Backend, Model
from core.model.params import init_params
from core.train.checkpoint import Checkpoint, prune_step_checkpoints, save_checkpoint
from core.train.lora_checkpoint import LoraStart
from core.train.meta import CheckpointMeta
from core.train.metrics_log import MetricsLog
from core.train.schedule import learning_rate
from core.train.signals import StopRequest
from core.train.tensorboard_log import TensorBoardLog


@dataclass
class TrainResult:
    steps_done: int  # optimizer steps completed in total (including those before a resume)
    stopped: str  # "finished", "interrupted", "early stopping" or "non-finite loss"
    last_val: dict = field(default_factory=dict)  # metrics of the last evaluation
    best_val_loss: float = math.inf
    tokens_per_second: float = 0.0
    run_dir: Path | None = None


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
    initial_params: dict[str, np.ndarray] | None = None,
    tensorboard: bool = False,
    lora: LoraStart | None = None,
) -> TrainResult:
    """Train `config` on `data` until `train_config.steps`, an interrupt, early stopping or a bad loss.

    `meta` is stored in every checkpoint (data settings, the command that resumes). `sample(model,
    step)` returns a short text shown at each evaluation. With several data-parallel processes
    (`backend.world_size` > 1) each draws its own batches from the shared seeded stream, and only
    rank 0 evaluates, logs and writes files. `initial_params` start a new run from trained weights
    (fine-tuning) instead of `init_params`; `tensorboard` also writes TensorBoard event files. With
    `lora`, `initial_params` (or the resumed checkpoint's base) stay frozen and only its adapters train;
    checkpoints then hold the adapters alone (core/train/lora_checkpoint.py).
    """
    run_dir = Path(run_dir)
    tc, rank, world = train_config, backend.rank, backend.world_size
    lead = rank == 0
    if not lead:
        log = lambda text: None  # noqa: E731  (one voice: rank 0 speaks for all processes)
    backend.manual_seed(tc.seed)
    if resume is not None:
        params = resume.params
    else:
        params = initial_params if initial_params is not None else init_params(config, seed=tc.seed)
    if lora is not None:  # frozen base, trainable adapters
        base, adapters = (resume.base_params, resume.adapters) if resume is not None else (params, lora.adapters)
        model = backend.build_lora(config, base, adapters, lora.config, tc)
    else:
        model = backend.build(config, params, tc)
    start, best_val, evals_without_gain = 0, math.inf, 0
    if resume is not None:
        model.load_optimizer_state(resume.optimizer_state)
        start, best_val = resume.step, float(resume.meta.best_val_loss)
        evals_without_gain = resume.meta.evals_without_gain
    if lead:
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics = MetricsLog(run_dir / "metrics.jsonl", start if resume else None)
        board = TensorBoardLog(run_dir, start if resume else None) if tensorboard else None
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
        if lora is not None:  # the adapters only: the base stays where meta.lora_base says
            weights = Checkpoint(config, {}, lora.meta(record), data.tokenizer.to_json(), state,
                                 adapters=model.adapters())
        else:
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
            text = sample(model, step)
            log(f"  sample: {text!r}")
            if board is not None:
                board.text(step, "sample", text)
        return val, improved

    def save_evaluation(step: int, val: dict, improved: bool) -> None:
        """The checkpoints of an evaluation step. `last` goes last: a crash before it resumes from the
        previous `last` and redoes this evaluation, so `last` never records a best loss `best` lacks."""
        if improved:
            checkpoint(step, "best", val, with_optimizer=False)
        checkpoint(step, f"step-{step:06d}", val, with_optimizer=False)
        checkpoint(step, "last", val, with_optimizer=True)
        prune_step_checkpoints(run_dir, keep_checkpoints)

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
            record = {"step": done, "train_loss": loss, "lr": lr, "tokens_per_second": result.tokens_per_second,
                      "grad_norm": model.last_grad_norm()}  # before clipping
            evaluating = done % tc.eval_every == 0 or done == tc.steps
            stopping = backend.any_rank(stop.signal_name is not None)
            if evaluating and lead:
                val, improved = evaluate(done, loss)
                result.last_val, result.best_val_loss = val, best_val
                record.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_perplexity=val["perplexity"])
            if lead:  # the step's line is on disk before any checkpoint of it: metrics never lag `last`
                metrics.write(record, sync=evaluating or stopping)
                if board is not None:
                    board.scalars(done, record)
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
    if lead and board is not None:
        board.close()
    return result
