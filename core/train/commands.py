"""The train command as a function of plain values: the run's settings from a preset and the flags
given (or from the checkpoint being resumed), the run folder checked, then `core.train.run`.
The command line only parses flags and calls `train_command`."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

from core.model.config import PRESETS, TrainConfig
from core.model.interface import Backend
from core.model.lora import LoraConfig

DEFAULT_PRESET = "default"  # the README's first command: a few minutes on a 2-core CPU
RUN_PRESETS = {**PRESETS, "default": dict(n_layer=2, n_head=4, n_embd=64, block_size=64)}
# Training settings of the default run; any flag overrides them.
DEFAULT_TRAIN = dict(steps=600, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=60, eval_every=100, eval_batches=8)


def train_command(make_backend: Callable[[], Backend], model_flags: dict, train_flags: dict, *,
                  backend_name: str | None = None, preset: str | None = None, data: str | None = None,
                  tokenizer: str | None = None, max_data_mb: float | None = None, reverse: bool | None = None,
                  out: str | None = None, resume: str | None = None, extend_steps: int | None = None,
                  init_from: str | None = None, tensorboard: bool = False, explain: bool = False,
                  progress: bool = True, sample_tokens: int = 48, lora_flags: dict | None = None) -> int:
    """Train; with `resume` continue a run, with `init_from` fine-tune a trained model in a new run
    (with `lora_flags`, the given --lora-* values by LoraConfig field: LoRA adapters on its frozen weights).
    `model_flags`/`train_flags`: the GPTConfig and TrainConfig fields given on the command line (None
    arguments: not given). `make_backend` runs only once every setting has been checked."""
    from core.data.dataset import DataSettings
    from core.train import resume as resuming
    from core.train.run import check_writable, run_training

    if extend_steps is not None and not resume:
        raise ValueError("--extend-steps continues a run: pass it with --resume RUN_DIR")
    if tensorboard:
        from core.train.tensorboard_log import check_tensorboard

        check_tensorboard()
    if init_from and resume:
        raise ValueError("--init-from starts a new run and --resume continues one: pass only one of them")
    lora = lora_config(lora_flags or {}, init_from, resume)
    init = resumed = None
    if resume:  # the same run continued: its own settings, only evaluation flags may change
        resumed, run_dir = resuming.load_resume(resume), resuming.run_dir_of(resume)
        data_given = {k: v for k, v in dict(data=data, tokenizer=tokenizer, max_data_mb=max_data_mb,
                                            reverse=reverse).items() if v is not None}
        settings, train_config = resuming.resume_settings(resumed, model_flags, train_flags, data_given, extend_steps)
        model_fields = None
    else:
        if init_from and preset:
            raise ValueError("--preset picks a new model's size: with --init-from the model is the checkpoint's")
        preset = preset or DEFAULT_PRESET
        if preset not in RUN_PRESETS:
            raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(RUN_PRESETS)}")
        # The default run's training settings belong to its model; a fine-tuning run starts from TrainConfig's.
        train_defaults = DEFAULT_TRAIN if preset == DEFAULT_PRESET and not init_from else {}
        train_config = TrainConfig(**{**train_defaults, **train_flags})
        vocab_size = model_flags.get("vocab_size") or 8192
        settings = DataSettings(data, tokenizer or "bpe", vocab_size, max_data_mb, bool(reverse))
        model_fields = {**RUN_PRESETS[preset], **model_flags}
        model_fields.pop("vocab_size", None)  # the tokenizer decides it (--vocab-size sizes the tokenizer)
        if init_from:  # fine-tuning: the model is the checkpoint's; flags may only crop or re-set dropout
            from core.train.init_from import load_initial_weights

            init = load_initial_weights(init_from, model_flags)
            if tokenizer and tokenizer != init.tokenizer_kind:
                raise ValueError(f"--tokenizer {tokenizer} contradicts the model's {init.tokenizer_kind} "
                                 "tokenizer: drop the flag (a fine-tuned model keeps its tokenizer)")
            settings = dataclasses.replace(settings, tokenizer=init.tokenizer_kind, vocab_size=init.config.vocab_size)
        backend_name = backend_name or os.environ.get("GPT_BACKEND", "tinygrad")
        run_dir = Path(out or f"runs/{backend_name}-{time.strftime('%Y%m%d-%H%M%S')}")
        resuming.check_new_run_dir(run_dir)  # before anything is written: an existing run stays whole
    check_writable(run_dir)
    backend = make_backend()
    if resumed is not None:
        resuming.check_world_size(resumed, backend.world_size)
    return run_training(backend, model_fields, train_config, settings, run_dir, resumed, explain, progress,
                        sample_tokens, init, tensorboard, lora)


def lora_config(flags: dict, init_from: str | None, resume: str | None) -> LoraConfig | None:
    """The LoRA config the --lora-* flags ask for (None: a full fine-tune or a new model), checked up front."""
    if not flags:
        return None
    if resume:
        raise ValueError("--resume continues a run with its own settings (LoRA ones too): drop the --lora-* flags")
    if "rank" not in flags:
        raise ValueError("--lora-* settings take effect with LoRA: add --lora-rank R (e.g. 8)")
    if not init_from:
        raise ValueError("--lora-rank adapts a trained model: pass --init-from CHECKPOINT (a run, a checkpoint or a "
                         "Hugging Face folder)")
    if isinstance(flags.get("targets"), str):
        flags = {**flags, "targets": tuple(t.strip() for t in flags["targets"].split(",") if t.strip())}
    return LoraConfig(**flags)


def compare_command(backend: Backend, models_file: str | None, model_specs: list[str] | None, model_flags: dict,
                    train_flags: dict, data: str | None, tokenizer: str | None, max_data_mb: float | None,
                    out: str) -> int:
    """compare: the models of `models_file` and `model_specs` (default: `compare.default_models`) trained
    on the same data, tokens and seed; one table and one plot in `out`."""
    from core.data.dataset import DataSettings
    from core.train import compare

    models = compare.read_models(models_file) if models_file else {}
    models.update(compare.parse_model(spec) for spec in model_specs or [])
    base = {k: v for k, v in {**compare.DEFAULT_BASE, **model_flags}.items() if k != "vocab_size"}
    train_config = TrainConfig(**{**DEFAULT_TRAIN, **train_flags})
    settings = DataSettings(data=data, tokenizer=tokenizer or "bpe", vocab_size=model_flags.get("vocab_size") or 8192,
                            max_data_mb=max_data_mb)
    folder = Path(out)
    compare.compare(backend, models or compare.default_models(base), train_config, settings, folder, base)
    print(f"wrote {folder / 'compare.md'}, {folder / 'compare.json'} and {folder / 'compare.png'}")
    return 0
