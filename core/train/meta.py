"""What a checkpoint's meta.json holds, as one dataclass: every field is named here once.

`save_checkpoint` writes `CheckpointMeta.to_json()` (plus the format version, the time and the model
config, which belong to the file rather than to the run); `load_checkpoint` reads it back with
`CheckpointMeta.from_json`. Everything else (training, resuming, quantizing, importing, the
analysis commands) reads and writes these attributes, never raw keys.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from core.data.direction import DIRECTIONS, FORWARD

# Written by `save_checkpoint` next to the fields below; not part of a run's metadata.
FILE_KEYS = ("format_version", "saved_at", "model_config", "checksums", "meta_sha256")


@dataclass(frozen=True)
class CheckpointMeta:
    step: int = 0  # optimizer steps done when this was saved
    tokens_seen: int = 0  # training tokens read so far, all processes together
    val_loss: float | None = None  # validation loss at this step, if it was evaluated
    best_val_loss: float = math.inf  # the best validation loss of the run so far (resume continues from it)
    evals_without_gain: int = 0  # evaluations since the best one, for --patience (resume continues the count)
    train_config: dict | None = None  # `TrainConfig.to_dict()`; None for imported or converted weights
    world_size: int = 1  # data-parallel processes that trained it
    backend: str | None = None  # framework and device that wrote it, and library versions
    device: str | None = None
    versions: dict = field(default_factory=dict)
    run_settings: dict = field(default_factory=dict)  # data, tokenizer, max_data_mb: what --resume reloads
    corpus: str | None = None  # one line describing the training text
    resume_command: str | None = None
    direction: str = FORWARD  # "forward" (next token) or "backward" (previous token, `train --reverse`)
    quantization: str | None = None  # "int8" for `quantize` output, else None (float32)
    quantized_modules: int | None = None
    quantized_embeddings: bool | None = None
    quantized_from: str | None = None  # the checkpoint it was quantized from
    imported_from: str | None = None  # a Hugging Face folder, for `import-hf` output
    init_from: str | None = None  # the checkpoint a fine-tuning run started from (`train --init-from`)
    source: str | None = None
    lora: dict | None = None  # a LoRA run's `LoraConfig.to_dict()` (core/model/lora.py); None for plain weights
    lora_base: dict | None = None  # the base a LoRA checkpoint adapts: {"path", "sha256"} of its model.safetensors

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"checkpoint meta has direction={self.direction!r}: expected one of {DIRECTIONS}")

    def replace(self, **changes: object) -> CheckpointMeta:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        """The fields that are set (None fields are left out, so meta.json stays short)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, values: dict) -> CheckpointMeta:
        """Read meta.json's fields; keys this version does not know (a newer writer's) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known and v is not None})
