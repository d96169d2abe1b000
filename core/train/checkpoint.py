"""Backend-neutral checkpoints: safetensors weights plus human-readable JSON metadata.

A checkpoint is a folder:

    model.safetensors       the parameters, `core.model.params` names, float32 (tied weights stored once);
                            or int8 weights with scales (`core/convert/quantize.py`, meta has "quantization")
    adapters.safetensors    instead of model.safetensors in a LoRA run's checkpoint: only what trains, the
                            base named in meta.json, never copied (`core/train/lora_checkpoint.py`)
    optimizer.safetensors   AdamW state (`step`, `exp_avg.*`, `exp_avg_sq.*`), only where training can resume
    tokenizer.json          the tokenizer, so text goes in and out exactly as in training
    meta.json               format version, time, model config and `core.train.meta.CheckpointMeta`:
                            training config, step, tokens seen, losses, backend and library versions

A run folder holds `checkpoints/last`, `checkpoints/best` and `checkpoints/step-NNNNNN`. Every
checkpoint is written to a temporary folder, flushed to disk (`core.train.durable`) and renamed
into place, so a crash or a power cut mid-write leaves the previous checkpoint whole. meta.json
records the sha256 of every other file and of itself: a damaged file is a one-line error on load.
Either backend reads what the other wrote: arrays are plain numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from core.convert.quantize import check_model_params
from core.model.config import GPTConfig, TrainConfig
from core.model.lora import LoraConfig, check_adapters, merge
from core.train.durable import SaveError, fsync_dir, write_file
from core.train.meta import FILE_KEYS, CheckpointMeta

FORMAT_VERSION = 1
MODEL_FILE, OPTIMIZER_FILE, TOKENIZER_FILE, META_FILE = (
    "model.safetensors",
    "optimizer.safetensors",
    "tokenizer.json",
    "meta.json",
)
ADAPTERS_FILE = "adapters.safetensors"


@dataclass
class Checkpoint:
    config: GPTConfig
    params: dict[str, np.ndarray]
    meta: CheckpointMeta
    tokenizer_json: str | None = None
    optimizer_state: dict[str, np.ndarray] | None = None
    path: Path | None = field(default=None, compare=False)
    # A LoRA checkpoint (meta.lora set): its adapters and the base weights they adapt; `params` is then
    # the two merged, what every command that uses a model reads.
    adapters: dict[str, np.ndarray] | None = None
    base_params: dict[str, np.ndarray] | None = field(default=None, compare=False)

    @property
    def step(self) -> int:
        return self.meta.step

    @property
    def train_config(self) -> TrainConfig | None:
        values = self.meta.train_config
        return TrainConfig(**values) if values else None


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write `checkpoint` to folder `path` atomically and durably: a temporary folder whose files and
    entries are flushed to disk before it is renamed into place; the previous folder is deleted last."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a process killed mid-save
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        run_meta = checkpoint.meta
        if checkpoint.adapters is not None:  # LoRA: the adapters alone, the base named in meta.json
            files = {ADAPTERS_FILE: save({k: np.ascontiguousarray(v) for k, v in checkpoint.adapters.items()})}
        else:  # plain weights (a merged LoRA model too: it no longer depends on a base)
            files = {MODEL_FILE: save({k: np.ascontiguousarray(v) for k, v in checkpoint.params.items()})}
            run_meta = run_meta.replace(lora=None, lora_base=None)
        if checkpoint.optimizer_state is not None:
            files[OPTIMIZER_FILE] = save({k: np.ascontiguousarray(v) for k, v in checkpoint.optimizer_state.items()})
        if checkpoint.tokenizer_json is not None:
            files[TOKENIZER_FILE] = checkpoint.tokenizer_json.encode()
        meta = {
            "format_version": FORMAT_VERSION,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **run_meta.to_json(),
            "model_config": checkpoint.config.to_dict(),
            "checksums": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        }
        meta["meta_sha256"] = _meta_digest(meta)  # a flipped bit in meta.json itself is caught too
        files[META_FILE] = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
        for name, data in files.items():
            write_file(tmp / name, data)
        apply_umask_modes(tmp)
        fsync_dir(tmp)
        _replace_dir(tmp, path)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and not isinstance(err, SaveError):
            raise SaveError(
                f"could not save checkpoint {path} ({err.strerror or err}): the previous one is kept; "
                "free some space and --resume the run"
            ) from None
        raise
    return path


def _meta_digest(meta: dict) -> str:
    """sha256 of meta.json's content without its own digest, in the canonical form it is written in."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, indent=2, sort_keys=True).encode()).hexdigest()


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def apply_umask_modes(*paths: str | Path) -> None:
    """Give `paths` (and everything under a folder among them) the modes a plain `open`/`mkdir` would:
    folders 0777 & ~umask, files 0666 & ~umask. `tempfile.mkdtemp` makes 0700 folders and safetensors
    writes 0600 files, which a folder meant to be shared or uploaded should not keep."""
    mask = _umask()
    for path in map(Path, paths):
        todo = [path, *path.rglob("*")] if path.is_dir() else [path]
        for p in todo:
            if not p.is_symlink():
                p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def _survivor(folder: Path) -> Path:
    """Where `_replace_dir` keeps the old `folder` while the new one is renamed in."""
    return folder.with_name(folder.name + ".old")


def _replace_dir(new: Path, target: Path) -> None:
    """Move folder `new` to `target`; the old `target` survives as `.old` until the new one is on disk."""
    old = _survivor(target)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(new, target)
    fsync_dir(target.parent)  # both renames on disk before the old copy goes
    shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(path: str | Path, which: str | int = "last") -> Path:
    """The checkpoint folder for a run folder (or a checkpoint folder) and `last`, `best` or a step."""
    path = Path(path)
    if not path.exists() and (_survivor(path) / META_FILE).exists():
        return _survivor(path)  # a checkpoint folder named directly, its save killed between the two renames
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path {path} does not exist: pass a run folder or a checkpoint folder")
    if (path / META_FILE).exists() or (path / MODEL_FILE).exists():
        return path
    root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    name = f"step-{int(which):06d}" if str(which).isdigit() else str(which)
    for candidate in (root / name, _survivor(root / name)):  # `.old` survives a crash between two renames
        if (candidate / META_FILE).exists():
            return candidate
    available = ", ".join(c["name"] for c in list_checkpoints(path)) or "none"
    raise FileNotFoundError(f"no checkpoint {which!r} in {path}: available are {available}")


def list_checkpoints(run_dir: str | Path) -> list[dict]:
    """Name, step and validation loss of every checkpoint in a run folder, by step."""
    run_dir = Path(run_dir)
    root = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
    found = []
    for meta_path in sorted(root.glob(f"*/{META_FILE}")):
        if meta_path.parent.name.endswith(".old") or ".tmp-" in meta_path.parent.name:
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        found.append({"name": meta_path.parent.name, "step": meta.get("step"), "val_loss": meta.get("val_loss")})
    return sorted(found, key=lambda c: (c["step"] or 0, c["name"]))


def _read(folder: Path, name: str, checksums: dict) -> bytes:
    """A file's bytes, checked against the sha256 meta.json recorded for it (where it did)."""
    data = (folder / name).read_bytes()
    if name in checksums and hashlib.sha256(data).hexdigest() != checksums[name]:
        raise ValueError(f"{name} does not match its checksum in {META_FILE} (damaged on disk?)")
    return data


def prune_step_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` `step-NNNNNN` checkpoints of a run (`last` and `best` stay)."""
    steps = [c for c in list_checkpoints(run_dir) if c["name"].startswith("step-")]
    for old in steps[: max(0, len(steps) - keep)]:
        for path in (Path(run_dir) / "checkpoints").glob(f"{old['name']}*"):  # its `.old` copy too
            shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(path: str | Path, which: str | int = "last", optimizer: bool = False) -> Checkpoint:
    """Read a checkpoint; a missing, corrupt or truncated one is a ValueError/FileNotFoundError in one line."""
    folder = resolve_checkpoint(path, which)
    try:
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"format version {meta['format_version']} is newer than this code ({FORMAT_VERSION})")
        if "meta_sha256" in meta and meta["meta_sha256"] != _meta_digest(meta):
            raise ValueError(f"{META_FILE} does not match its checksum")
        checksums = meta.get("checksums", {})  # absent in checkpoints written before checksums
        config = GPTConfig.from_dict(meta["model_config"])
        run_meta = CheckpointMeta.from_json({k: v for k, v in meta.items() if k not in FILE_KEYS})
        if run_meta.lora:
            adapters, params = load(_read(folder, ADAPTERS_FILE, checksums)), None
        else:
            adapters, params = None, load(_read(folder, MODEL_FILE, checksums))
            check_model_params(config, params)  # float32, or int8 pairs (core/convert/quantize.py)
        with_state = optimizer and (folder / OPTIMIZER_FILE).exists()
        state = load(_read(folder, OPTIMIZER_FILE, checksums)) if with_state else None
        has_tokenizer = (folder / TOKENIZER_FILE).exists() or TOKENIZER_FILE in checksums
        tokenizer = _read(folder, TOKENIZER_FILE, checksums).decode() if has_tokenizer else None
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError, SafetensorError) as err:
        raise ValueError(f"checkpoint {folder} is corrupt or incomplete ({err}): retrain or pick another") from None
    if optimizer and state is None:
        raise ValueError(f"checkpoint {folder} has no optimizer state, so training cannot resume from it: use `last`")
    base = None
    if adapters is not None:  # the base is read (and checked against its recorded sha256) outside the try
        lora = LoraConfig.from_dict(run_meta.lora)
        check_adapters(config, lora, adapters)
        base = load_lora_base(run_meta.lora_base, config)
        params = merge(base, adapters, lora)
    return Checkpoint(config, params, run_meta, tokenizer, state, folder, adapters, base)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_lora_base(base: dict, config: GPTConfig) -> dict[str, np.ndarray]:
    """The base weights a LoRA checkpoint adapts (core/train/lora_checkpoint.py), checked against the
    sha256 it recorded, with learned positions cropped to the run's block size as `--init-from` did."""
    folder = Path(base["path"])
    if not (folder / MODEL_FILE).is_file():
        raise FileNotFoundError(f"the LoRA base {folder} is missing: put it back there (or merge-lora where it exists)")
    if file_sha256(folder / MODEL_FILE) != base["sha256"]:
        raise ValueError(f"the LoRA base {folder / MODEL_FILE} has changed since these adapters were trained "
                         "(sha256 differs): restore that base, or train new adapters on this one")
    params = dict(load_checkpoint(folder).params)
    if "wpe.weight" in params:
        params["wpe.weight"] = params["wpe.weight"][: config.block_size].copy()  # (base block, C) -> (block_size, C)
    return params


def load_best_or_last(path: str | Path, which: str | int = "best") -> Checkpoint:
    """`load_checkpoint` for using a model: `best` falls back to `last` for a run too short to have evaluated."""
    try:
        return load_checkpoint(path, which)
    except FileNotFoundError:
        if which != "best":
            raise
        return load_checkpoint(path, "last")
