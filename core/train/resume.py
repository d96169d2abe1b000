"""Resuming a run: what `--resume` takes from the checkpoint, and every change it refuses.

A stopped run continues from `checkpoints/last` (weights, AdamW state, step) with its own data
settings, model config and training settings; only training flags such as `--steps` may change.
The loop (`core.train.loop`) then restarts at the saved step with the saved best validation loss,
so the losses match the uninterrupted run step for step.
"""

from __future__ import annotations

from pathlib import Path

from core.data.dataset import DataSettings
from core.data.direction import BACKWARD
from core.model.config import GPTConfig, TrainConfig
from core.train.checkpoint import Checkpoint, load_checkpoint


def load_resume(run_dir: str | Path) -> Checkpoint:
    """The run's `last` checkpoint with its optimizer state (a one-line error when it cannot resume)."""
    return load_checkpoint(run_dir, "last", optimizer=True)


def resume_settings(checkpoint: Checkpoint, model_given: dict, train_given: dict) -> tuple[DataSettings, TrainConfig]:
    """The data settings and training config a resumed run uses: the saved ones, with `train_given`
    (training flags on the command line) on top. Model flags that would change the model are refused."""
    saved, meta = checkpoint.meta.run_settings, checkpoint.meta
    if not saved or meta.train_config is None:
        raise ValueError(f"checkpoint {checkpoint.path} was not written by a training run, so it cannot be resumed")
    settings = DataSettings(saved.get("data"), saved.get("tokenizer", "bpe"), checkpoint.config.vocab_size,
                            saved.get("max_data_mb"), reverse=meta.direction == BACKWARD)
    if model_given and checkpoint.config.replace(**model_given) != checkpoint.config:
        raise ValueError(f"--resume refuses a different model config: {checkpoint.config} vs flags {model_given}")
    return settings, TrainConfig(**{**meta.train_config, **train_given})


def check_same_vocabulary(vocab_size: int, config: GPTConfig) -> None:
    """The resumed run's tokenizer must be the one the model was trained with."""
    if vocab_size != config.vocab_size:
        raise ValueError(f"--resume refuses a different tokenizer: vocabulary {vocab_size} vs {config.vocab_size}")
