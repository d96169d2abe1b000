"""The small interface every backend implements, as `typing.Protocol`s.

The core owns everything else (data, batches, schedule, loop, sampling, checkpoints); a backend
only turns numpy arrays into its own tensors, runs the network and its optimizer, and turns the
results back into numpy. Arrays cross this boundary as numpy so that both backends can be driven by
the same code and compared number for number.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from core.model.config import GPTConfig, TrainConfig
from core.model.lora import LoraConfig

# Targets equal to this are left out of the loss (padding). Both frameworks are told to use it.
IGNORE_INDEX = -1


class SetupError(RuntimeError):
    """The machine lacks something a backend needs (a compiler, a device); the message says what to do."""


class Model(Protocol):
    """A GPT living on one backend's device."""

    config: GPTConfig

    def logits(self, tokens: np.ndarray) -> np.ndarray:
        """int tokens (B, T) -> float32 logits (B, T, vocab_size)."""

    def loss(self, tokens: np.ndarray, targets: np.ndarray) -> float:
        """Mean next-token cross-entropy; targets equal to IGNORE_INDEX are skipped."""

    def gradients(self, tokens: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """Gradient of `loss` for every parameter, by name (changes no weights)."""

    def train_step(self, tokens: np.ndarray, targets: np.ndarray, lr: float) -> float:
        """One optimizer step on micro-batches (A, B, T): the mean loss of the A micro-batches is
        backpropagated, the global gradient norm clipped to `grad_clip`, then AdamW with decoupled
        weight decay on 2-D weights only. Returns the mean loss before the update."""

    def last_grad_norm(self) -> float:
        """The global gradient norm of the last `train_step`, before clipping."""

    def params(self) -> dict[str, np.ndarray]:
        """Every parameter as float32 numpy, with `core.model.params` names and shapes."""

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Overwrite every parameter in place."""

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """AdamW state: `step`, and `exp_avg.{name}` / `exp_avg_sq.{name}` per parameter."""

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `optimizer_state` returned (from either backend)."""

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        """Start a KV cache with prompts (B, T) at positions 0..T-1; logits of the last position (B, V)."""

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Feed one token per row (B,) at the next position, reusing the cache; logits (B, V)."""

    def attention_maps(self, tokens: np.ndarray) -> list[np.ndarray]:
        """Attention weights of every layer for tokens (B, T): a list of (B, n_head, T, T)."""

    # Serving (core/serve): S cache slots, each holding one request at its own position, so requests
    # join and leave a decoding batch at any step. Results equal the full forward pass at that position.
    def slot_start(self, n_slots: int) -> None:
        """Allocate an empty cache of `n_slots` slots (replacing any earlier one)."""

    def slot_prefill(self, slot: int, tokens: np.ndarray) -> np.ndarray:
        """Write a prompt (T,), T <= block_size, into slot `slot` at positions 0..T-1; its last logits (V,)."""

    def slot_decode(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Feed tokens (R,) at positions (R,) < block_size to slots 0..R-1, each reading only its own slot's
        keys up to its position; logits (R, V). Slots among them that are unused may be fed (0, 0)."""


class LoraModel(Model, Protocol):
    """A model with LoRA adapters (core/model/lora.py) over frozen base weights. Only the adapters (and
    the biases/norms its config names) train: `gradients`, `train_step` and the optimizer state cover
    those alone. `params()` is the adapted model as plain parameters (adapters merged in);
    `load_params` overwrites the base weights."""

    def adapters(self) -> dict[str, np.ndarray]:
        """What trains, by `core.model.lora.trainable_shapes` names, as float32 numpy."""

    def load_adapters(self, adapters: dict[str, np.ndarray]) -> None:
        """Overwrite what trains in place."""


class Backend(Protocol):
    """A framework on one device, able to build models."""

    name: str  # "torch" or "tinygrad"
    device: str  # the device in the framework's own terms, e.g. "cpu", "cuda:0", "CPU", "CUDA"
    rank: int  # this process's index among data-parallel processes (0 when alone)
    world_size: int  # number of data-parallel processes (1 when alone)

    def build(self, config: GPTConfig, params: dict[str, np.ndarray], train: TrainConfig | None = None) -> Model:
        """A model holding copies of `params`; `train` sets the optimizer (defaults: TrainConfig())."""

    def build_lora(
        self, config: GPTConfig, params: dict[str, np.ndarray], adapters: dict[str, np.ndarray], lora: LoraConfig,
        train: TrainConfig | None = None,
    ) -> LoraModel:
        """A model of frozen base `params` with trainable LoRA `adapters` (`core.model.lora.init_adapters`)."""

    def manual_seed(self, seed: int) -> None:
        """Seed the framework's own random numbers (dropout)."""

    def versions(self) -> dict[str, str]:
        """Library versions, recorded in checkpoints and benchmark results."""

    def any_rank(self, flag: bool) -> bool:
        """True on every process if `flag` is True on any (a collective call; `flag` itself when alone)."""
