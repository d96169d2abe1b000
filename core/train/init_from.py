"""Fine-tuning: a new run that starts from trained weights (`--init-from`), as nanoGPT's `init_from`.

The weights and the tokenizer come from a run folder (its `best`, else `last`), a checkpoint folder,
or a Hugging Face folder (`save_pretrained` output, converted in memory as `import-hf` does). What a
new run gets fresh: the optimizer state, the schedule, the step counter and the data (`--data`),
read with the *model's* tokenizer so every token id means what it meant in training.

The model is the checkpoint's. Flags may only say what it already is, with two exceptions that do
not change any weight's meaning: `--dropout` (a training setting) and a smaller `--block-size`
(learned position rows past it are cropped; a model without learned positions keeps all its weights).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.convert.quantize import is_quantized
from core.data.dataset import DataSettings
from core.data.direction import BACKWARD
from core.data.tokenizer import tokenizer_from_json
from core.model.config import GPTConfig, TrainConfig
from core.train.checkpoint import META_FILE, Checkpoint, load_best_or_last

# Model fields a fine-tuning run may set to something else than the checkpoint has.
ADJUSTABLE = ("dropout", "block_size")


@dataclass(frozen=True)
class InitialWeights:
    config: GPTConfig  # the checkpoint's model, with the adjustments above
    params: dict[str, np.ndarray]
    tokenizer_json: str
    tokenizer_kind: str  # "bpe" or "char"
    direction: str  # "forward" or "backward": a fine-tuned model keeps its reading direction
    source: str  # the folder the weights came from, recorded in the new run's checkpoints
    folder: str | None = None  # the checkpoint folder read (a run's best or last), which a LoRA run names as its base


def _load(path: Path) -> Checkpoint:
    if (path / "config.json").is_file() and not (path / META_FILE).is_file():
        from core.convert.huggingface import import_hf_folder

        checkpoint, _ = import_hf_folder(path)  # a Hugging Face folder: converted in memory
        return checkpoint
    return load_best_or_last(path)


def load_initial_weights(path: str | Path, given_model_fields: dict) -> InitialWeights:
    """The weights a fine-tuning run starts from; a one-line ValueError for anything it cannot start from."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--init-from {path} does not exist: pass a run folder, a checkpoint or a HF folder")
    checkpoint = _load(path)
    if checkpoint.tokenizer_json is None:
        raise ValueError(f"--init-from {path} has no tokenizer.json: a model is fine-tuned with its own tokenizer")
    if is_quantized(checkpoint.params):
        raise ValueError(f"--init-from {path} holds int8 weights: start from the float32 checkpoint they came from")
    config, params = checkpoint.config, dict(checkpoint.params)
    for name, value in given_model_fields.items():
        stored = getattr(config, name)
        if name not in ADJUSTABLE and value != stored:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} {value} contradicts the model in {path} ({name}={stored}): drop the flag")
    block_size = given_model_fields.get("block_size", config.block_size)
    if "wpe.weight" in params:  # learned positions: a row per position, so the context can shrink, not grow
        if block_size > config.block_size:
            raise ValueError(
                f"--block-size {block_size} is longer than the model in {path} learned ({config.block_size}): "
                f"use at most {config.block_size}"
            )
        params["wpe.weight"] = params["wpe.weight"][:block_size].copy()  # (block_size_old, C) -> (block_size, C)
    changes = {k: v for k, v in given_model_fields.items() if k in ADJUSTABLE}
    config = dataclasses.replace(config, **changes)
    kind = tokenizer_from_json(checkpoint.tokenizer_json).kind
    folder = str(checkpoint.path or path)
    return InitialWeights(config, params, checkpoint.tokenizer_json, kind, checkpoint.meta.direction, str(path), folder)


def check_init_matches(init: InitialWeights, train_config: TrainConfig, settings: DataSettings) -> None:
    """The new run must train the objective and read the direction the model was made for."""
    if init.config.causal and train_config.objective == "mlm":
        raise ValueError(f"{init.source} is a causal (next-token) model: fine-tune it without --objective mlm")
    if not init.config.causal and train_config.objective != "mlm":
        raise ValueError(f"{init.source} is a bidirectional (masked-token) model: fine-tune it with --objective mlm")
    if (init.direction == BACKWARD) != settings.reverse:
        flag = "with --reverse" if init.direction == BACKWARD else "without --reverse"
        raise ValueError(f"{init.source} reads text {init.direction}: fine-tune it {flag}")
