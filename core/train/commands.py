"""The train command as a function of plain values: the run's settings from a preset and the flags
given (or from the checkpoint being resumed), the run folder checked, then `core.train.run`.
The command line only parses flags and calls `train_command`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from core.model.config import PRESETS, TrainConfig
from core.model.interface import Backend

DEFAULT_PRESET = "default"  # the README's first command: a few minutes on a 2-core CPU
RUN_PRESETS = {**PRESETS, "default": dict(n_layer=2, n_head=4, n_embd=64, block_size=64)}
# Training settings of the default run; any flag overrides them.
DEFAULT_TRAIN = dict(steps=300, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=30, eval_every=100, eval_batches=8)


def train_command(make_backend: Callable[[], Backend], model_flags: dict, train_flags: dict, *,
                  backend_name: str | None = None, preset: str | None = None, data: str | None = None,
                  tokenizer: str = "bpe", max_data_mb: float | None = None, reverse: bool = False,
                  out: str | None = None, resume: str | None = None, explain: bool = False, progress: bool = True,
                  sample_tokens: int = 48) -> int:
    """Train, or with `resume` continue a run. `model_flags`/`train_flags`: the GPTConfig and TrainConfig
    fields given on the command line. `make_backend` runs only once every setting has been checked."""
    from core.data.dataset import DataSettings
    from core.train.resume import load_resume, resume_settings
    from core.train.run import check_writable, run_training

    resumed = load_resume(resume) if resume else None
    if resumed is not None:  # the run's own settings, with only --steps and friends overridable
        settings, train_config = resume_settings(resumed, model_flags, train_flags)
        model_fields, run_dir = None, Path(resume)
    else:
        preset = preset or DEFAULT_PRESET
        if preset not in RUN_PRESETS:
            raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(RUN_PRESETS)}")
        train_defaults = DEFAULT_TRAIN if preset == DEFAULT_PRESET else {}
        train_config = TrainConfig(**{**train_defaults, **train_flags})
        vocab_size = model_flags.get("vocab_size") or 8192
        settings = DataSettings(data, tokenizer, vocab_size, max_data_mb, reverse)
        model_fields = {**RUN_PRESETS[preset], **model_flags}
        model_fields.pop("vocab_size", None)  # the tokenizer decides it (--vocab-size sizes the tokenizer)
        backend_name = backend_name or os.environ.get("GPT_BACKEND", "tinygrad")
        run_dir = Path(out or f"runs/{backend_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    check_writable(run_dir)
    return run_training(make_backend(), model_fields, train_config, settings, run_dir, resumed, explain, progress,
                        sample_tokens)
