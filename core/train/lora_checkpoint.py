"""LoRA checkpoints: adapters stored apart from the base model they adapt, the base named, never copied.

A LoRA run's checkpoint (`core.train.checkpoint`) holds `adapters.safetensors` (what trains: the
adapters of core/model/lora.py, and biases/norms if asked) where a plain one holds model.safetensors,
AdamW state of those alone, the tokenizer, and meta.json whose `lora` is the LoRA config and
`lora_base` names the base: its checkpoint folder and the sha256 of its model.safetensors. Loading
(`core.train.checkpoint.load_lora_base`) reads the base again and checks that digest, so a base changed
or moved since training is a one-line error, never a silently different model. `merge-lora` writes
base + adapters as a plain checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.model.lora import LoraConfig, count_trainable
from core.train.checkpoint import META_FILE, MODEL_FILE, Checkpoint, file_sha256, load_best_or_last, save_checkpoint
from core.train.meta import CheckpointMeta


@dataclass(frozen=True)
class LoraStart:
    """What a LoRA run trains from: its config, the base it names, and the adapters to start with."""

    config: LoraConfig
    base: dict  # {"path": the base checkpoint folder, "sha256": of its model.safetensors}
    adapters: dict[str, np.ndarray]

    def meta(self, meta: CheckpointMeta) -> CheckpointMeta:
        return meta.replace(lora=self.config.to_dict(), lora_base=self.base)


def base_reference(folder: str | Path) -> dict:
    """How a LoRA checkpoint names its base: the folder (absolute) and its weights' sha256. Reading it
    again (and checking that digest) is `core.train.checkpoint.load_lora_base`'s."""
    folder = Path(folder).resolve()
    weights = folder / MODEL_FILE
    if not (folder / META_FILE).is_file():  # loading a base is the checkpoint loader's job: our format only
        raise ValueError(f"{folder} is a Hugging Face folder: LoRA adapts a checkpoint of ours; convert it once with "
                         f"import-hf --model {folder} --out DIR, then pass --init-from DIR")
    if not weights.is_file():
        raise ValueError(f"{folder} holds no {MODEL_FILE} (a LoRA checkpoint?): LoRA adapts a plain model; "
                         f"run merge-lora on it and pass the merged folder to --init-from")
    return {"path": str(folder), "sha256": file_sha256(weights)}


def merge_lora(checkpoint: str | Path, step: str | int = "best", out: str | Path | None = None) -> int:
    """merge-lora: write a LoRA checkpoint's base with its adapters folded in as a plain checkpoint
    (default folder: RUN-merged beside the run); never overwrites."""
    from core.train.resume import run_dir_of

    loaded = load_best_or_last(checkpoint, step)
    if loaded.adapters is None:
        raise ValueError(f"{loaded.path} is not a LoRA checkpoint (it holds plain weights): there is nothing to merge")
    run_dir = run_dir_of(loaded.path)
    out = Path(out) if out else run_dir.with_name(f"{run_dir.name}-merged")
    if out.exists():
        raise ValueError(f"{out} exists: merge-lora never overwrites a folder; pass another --out")
    lora = LoraConfig.from_dict(loaded.meta.lora)
    meta = loaded.meta.replace(source=f"merge-lora of {loaded.path} onto {loaded.meta.lora_base['path']}")
    save_checkpoint(out, Checkpoint(loaded.config, loaded.params, meta, loaded.tokenizer_json))
    print(f"wrote {out}: {count_trainable(loaded.config, lora):,} adapter parameters (rank {lora.rank}, "
          f"{', '.join(lora.targets)}) folded into the base {loaded.meta.lora_base['path']}")
    return 0
