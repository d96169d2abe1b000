"""Shared by the evaluation and analysis tests: a model that is the numpy reference itself (no
framework), with weights sharp enough that its predictions are far from uniform."""

from __future__ import annotations

import numpy as np

from core.model import reference
from core.model.config import GPTConfig
from core.model.params import init_params

CONFIG = GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=8)


class ReferenceModel:
    """The numpy reference behind the `Model.logits` interface (float32 out, like a backend)."""

    def __init__(self, config: GPTConfig, params: dict[str, np.ndarray]):
        self.config, self.params = config, params

    def logits(self, tokens: np.ndarray) -> np.ndarray:
        return reference.logits(self.config, self.params, tokens)

    def attention_maps(self, tokens: np.ndarray) -> list[np.ndarray]:
        return [m.astype(np.float32) for m in reference.forward(self.config, self.params, tokens)[1]]


def sharp_params(config: GPTConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Initial weights scaled up, so predictions are far from uniform and ranks mean something."""
    return {k: (v * 15 if v.ndim == 2 else v) for k, v in init_params(config, seed).items()}


MODEL = ReferenceModel(CONFIG, sharp_params(CONFIG))
