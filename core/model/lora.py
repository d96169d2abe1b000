"""LoRA (low-rank adaptation) as plain data: which Linear weights get adapters, their names, shapes and
initial values, and how they fold back into ordinary weights.

A target Linear `name` with weight W (in, out) (stored as `core.model.params` says, `y = x @ W + b`)
gets two small matrices, and computes

    y = x @ W + b + scale * (x @ A) @ B          scale = alpha / rank

    {name}.lora_A    (in, rank)     uniform(-1/sqrt(in), 1/sqrt(in)), as Hugging Face peft initialises it
    {name}.lora_B    (rank, out)    zeros: a fresh adapter leaves the model exactly as it was

Only the adapters train (and, if asked, every bias and norm parameter); W stays frozen, so a LoRA
checkpoint stores these few tensors and names its base instead of copying it. `merge` folds an
adapter into its weight, W + scale * A @ B, giving a plain model that computes the same function.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from core.model.config import GPTConfig
from core.model.params import check_shapes, param_shapes

# Names a target may be given by: a Linear's own name (both c_proj with "c_proj") or its block and name.
LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
VALID_TARGETS = ("c_attn", "c_proj", "c_fc", *LINEARS)
ADAPTER_SUFFIXES = (".lora_A", ".lora_B")


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 8  # r: the inner width of each adapter A (in, r) @ B (r, out)
    alpha: float = 16.0  # the adapter's output is scaled by alpha / rank, so rank can change without retuning lr
    targets: tuple[str, ...] = ("c_attn", "c_proj")  # Linear layers given adapters (see VALID_TARGETS)
    train_biases: bool = False  # also train every bias (frozen otherwise)
    train_norms: bool = False  # also train every LayerNorm/RMSNorm gain and shift

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        if not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"--lora-rank {self.rank} is invalid: use a positive whole number such as 8")
        if not math.isfinite(self.alpha) or self.alpha <= 0:
            raise ValueError(f"--lora-alpha {self.alpha} is invalid: use a positive number such as 16")
        unknown = [t for t in self.targets if t not in VALID_TARGETS]
        if unknown or not self.targets:
            raise ValueError(
                f"--lora-targets {','.join(self.targets)!r} names no known layer {unknown}: "
                f"use some of {', '.join(VALID_TARGETS)}"
            )

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, values: dict) -> LoraConfig:
        return cls(**{**values, "targets": tuple(values["targets"])})


def target_layers(config: GPTConfig, lora: LoraConfig) -> list[str]:
    """The Linear layers that get adapters, e.g. `h.0.attn.c_attn`, in parameter order."""
    layers = []
    for i in range(config.n_layer):
        for linear in LINEARS:
            if linear in lora.targets or linear.split(".")[1] in lora.targets:
                layers.append(f"h.{i}.{linear}")
    return layers


def adapter_shapes(config: GPTConfig, lora: LoraConfig) -> dict[str, tuple[int, int]]:
    """Every adapter's name and shape: `{layer}.lora_A` (in, rank) and `{layer}.lora_B` (rank, out)."""
    shapes = param_shapes(config)
    out: dict[str, tuple[int, int]] = {}
    for layer in target_layers(config, lora):
        n_in, n_out = shapes[f"{layer}.weight"]
        out[f"{layer}.lora_A"] = (n_in, lora.rank)
        out[f"{layer}.lora_B"] = (lora.rank, n_out)
    return out


def trained_base_names(config: GPTConfig, lora: LoraConfig) -> list[str]:
    """Base parameters that train beside the adapters: biases and/or norm parameters, as asked."""
    names = []
    for name in param_shapes(config):
        is_norm = ".ln_" in name or name.startswith("ln_")
        if (lora.train_norms and is_norm) or (lora.train_biases and name.endswith(".bias") and not is_norm):
            names.append(name)
    return names


def trainable_shapes(config: GPTConfig, lora: LoraConfig) -> dict[str, tuple[int, ...]]:
    """Everything a LoRA run trains and stores (its checkpoint's `adapters.safetensors`), by name."""
    shapes = param_shapes(config)
    return {**adapter_shapes(config, lora), **{n: shapes[n] for n in trained_base_names(config, lora)}}


def count_trainable(config: GPTConfig, lora: LoraConfig) -> int:
    return sum(math.prod(shape) for shape in trainable_shapes(config, lora).values())


def init_adapters(config: GPTConfig, lora: LoraConfig, base: dict[str, np.ndarray], seed: int = 0) -> dict:
    """Fresh trainables: A uniform(-1/sqrt(in), 1/sqrt(in)), B zero, trained biases/norms copied from `base`."""
    rng = np.random.default_rng(seed)
    adapters: dict[str, np.ndarray] = {}
    for name, shape in adapter_shapes(config, lora).items():
        if name.endswith(".lora_A"):
            bound = 1.0 / math.sqrt(shape[0])
            adapters[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
        else:  # B = 0: the adapted model starts as the base model
            adapters[name] = np.zeros(shape, np.float32)
    for name in trained_base_names(config, lora):
        adapters[name] = np.array(base[name], dtype=np.float32)
    return adapters


def check_adapters(config: GPTConfig, lora: LoraConfig, adapters: dict[str, np.ndarray]) -> None:
    """Raise ValueError unless `adapters` has exactly the names and shapes this config trains."""
    check_shapes(trainable_shapes(config, lora), adapters, "adapter")


def merge(params: dict[str, np.ndarray], adapters: dict[str, np.ndarray], lora: LoraConfig) -> dict:
    """Plain parameters computing what base + adapters compute: W + scale * A @ B for each adapted
    layer (in float64, rounded once to float32), trained biases/norms taking the adapters' values."""
    merged = dict(params)
    for name, value in adapters.items():
        if not name.endswith(ADAPTER_SUFFIXES):
            merged[name] = value  # a bias or norm parameter trained beside the adapters
        elif name.endswith(".lora_A"):
            layer = name[: -len(".lora_A")]
            A, B = value.astype(np.float64), adapters[f"{layer}.lora_B"].astype(np.float64)
            W = params[f"{layer}.weight"].astype(np.float64)
            merged[f"{layer}.weight"] = (W + lora.scale * A @ B).astype(np.float32)  # (in, r) @ (r, out)
    return merged
