"""Resuming a run: which folder it lives in, what `--resume` takes from the checkpoint, and every
change it refuses.

A run folder (`runs/X`) holds `metrics.jsonl` and `checkpoints/`. Starting a new run there would
delete the metrics and overwrite the checkpoints, so `check_new_run_dir` refuses it. A resumed run
is the same run continued from `checkpoints/last` (weights, AdamW state, step, best loss, the
early-stopping count): `resume_settings` refuses any setting that would change its data stream,
model or schedule, naming the stored value and the given one; only `CHANGEABLE_ON_RESUME` may
change. The one sanctioned change of length is `--extend-steps N`: N more steps, the learning rate
staying on the curve the run was planned with (after its decay it holds at `min_lr`, see
`core.train.schedule`).
"""

from __future__ import annotations

from pathlib import Path

from core.data.dataset import DataSettings
from core.data.direction import BACKWARD
from core.model.config import GPTConfig, TrainConfig
from core.train.checkpoint import META_FILE, Checkpoint, load_checkpoint

# Settings that do not change what the run computes; every other TrainConfig field is fixed at the start.
CHANGEABLE_ON_RESUME = ("eval_every", "eval_batches", "patience")


def holds_run(folder: Path) -> bool:
    """Whether `folder` already holds (part of) a training run."""
    return (folder / "metrics.jsonl").exists() or (folder / "checkpoints").is_dir()


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse to start a new run in a folder that holds one (it would be destroyed)."""
    if holds_run(run_dir):
        raise ValueError(f"{run_dir} already holds a run: --resume {run_dir} to continue it, or choose another --out")


def run_dir_of(path: str | Path) -> Path:
    """The run folder of `--resume PATH`: PATH itself, or the run holding checkpoint folder PATH."""
    path = Path(path)
    if (path / META_FILE).exists() and path.parent.name == "checkpoints":
        return path.parent.parent  # runs/X/checkpoints/last -> runs/X
    if path.name == "checkpoints" and path.is_dir():
        return path.parent
    return path


def load_resume(path: str | Path) -> Checkpoint:
    """The checkpoint `--resume PATH` continues, with its optimizer state: the run's `last`, or
    checkpoint folder PATH itself (a one-line error when it cannot resume)."""
    path = Path(path)
    inside_run = (path / META_FILE).exists() and path.parent.name == "checkpoints"
    return load_checkpoint(run_dir_of(path), path.name if inside_run else "last", optimizer=True)


def _refuse(name: str, stored: object, new: object) -> None:
    if stored != new:
        hint = " (use --extend-steps N to train N more steps)" if name == "steps" else ""
        raise ValueError(
            f"--resume continues the same run: it was trained with {name}={stored!r}, not {new!r}; "
            f"drop the flag or start a new run with another --out{hint}"
        )


def resume_settings(
    checkpoint: Checkpoint,
    model_given: dict,
    train_given: dict,
    data_given: dict | None = None,
    extend_steps: int | None = None,
) -> tuple[DataSettings, TrainConfig]:
    """The data settings and training config a resumed run uses: the saved ones. Flags given on the
    command line (`data_given`: data, tokenizer, max_data_mb, reverse) must equal them, except
    `CHANGEABLE_ON_RESUME`; `extend_steps` adds steps."""
    saved, meta = checkpoint.meta.run_settings, checkpoint.meta
    if not saved or meta.train_config is None:
        raise ValueError(f"checkpoint {checkpoint.path} was not written by a training run, so it cannot be resumed")
    stored_data = {"data": saved.get("data"), "tokenizer": saved.get("tokenizer", "bpe"),
                   "max_data_mb": saved.get("max_data_mb"), "reverse": meta.direction == BACKWARD}
    for name, value in (data_given or {}).items():
        _refuse(name, stored_data[name], value)
    settings = DataSettings(stored_data["data"], stored_data["tokenizer"], checkpoint.config.vocab_size,
                            stored_data["max_data_mb"], reverse=stored_data["reverse"])
    if model_given and checkpoint.config.replace(**model_given) != checkpoint.config:
        raise ValueError(f"--resume refuses a different model config: {checkpoint.config} vs flags {model_given}")
    return settings, resume_train_config(checkpoint, train_given, extend_steps)


def resume_train_config(checkpoint: Checkpoint, given: dict, extend_steps: int | None) -> TrainConfig:
    """The stored `TrainConfig`, with only `CHANGEABLE_ON_RESUME` flags applied and `--extend-steps`."""
    stored = TrainConfig(**checkpoint.meta.train_config)
    for name, value in given.items():
        if name not in CHANGEABLE_ON_RESUME:
            _refuse(name, getattr(stored, name), value)
    config = stored.replace(**given)
    if extend_steps is not None:
        if extend_steps <= 0:
            raise ValueError(f"--extend-steps {extend_steps} is invalid: use a positive number of steps")
        # The decay keeps the length it was planned with, so the extension runs at min_lr.
        config = config.replace(steps=stored.steps + extend_steps, decay_steps=stored.decay_steps or stored.steps)
    elif checkpoint.step >= stored.steps:
        raise ValueError(
            f"the run finished at step {checkpoint.step} of {stored.steps}: add --extend-steps N to train N more steps"
        )
    if config.patience and checkpoint.meta.evals_without_gain >= config.patience:
        raise ValueError(
            f"the run stopped early at step {checkpoint.step} ({checkpoint.meta.evals_without_gain} evaluations "
            f"without gain, patience {config.patience}): pass a larger --patience (0: off) to continue it"
        )
    return config


def check_world_size(checkpoint: Checkpoint, world_size: int) -> None:
    """The number of data-parallel processes decides which batches each step reads: it may not change."""
    if checkpoint.meta.world_size != world_size:
        raise ValueError(
            f"--resume continues the same run: it was trained by {checkpoint.meta.world_size} process(es), "
            f"not {world_size}; start it with the same torchrun --nproc_per_node"
        )


def check_same_vocabulary(vocab_size: int, config: GPTConfig) -> None:
    """The resumed run's tokenizer must be the one the model was trained with."""
    if vocab_size != config.vocab_size:
        raise ValueError(f"--resume refuses a different tokenizer: vocabulary {vocab_size} vs {config.vocab_size}")
