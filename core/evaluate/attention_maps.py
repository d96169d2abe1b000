"""Attention weights of a prompt, per layer and head, with a few numbers that describe each head.

The maps come from the backend (`Model.attention_maps`, tested against `core.model.reference`): for
layer l and head h, row t is the distribution over positions 0..t that query t attends to. A
backward model reads the prompt reversed, so its maps are over the reversed tokens; the labels
follow the model's reading order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data.direction import FORWARD, to_model_order
from core.data.tokenizer import Tokenizer
from core.model.context import crop_context
from core.model.interface import Model
from core.model.softmax import entropy


@dataclass
class Attention:
    tokens: list[str]  # in the order the model read them
    maps: list[np.ndarray]  # per layer: (n_head, T, T)
    cropped: int  # tokens left out because the prompt was longer than block_size

    def head_summary(self) -> list[dict]:
        """Per head: mean entropy of its rows (nats), weight on the previous token, on the first
        token, and mean distance attended (in tokens)."""
        T = len(self.tokens)
        distance = np.arange(T)[:, None] - np.arange(T)[None, :]  # (T, T): query - key, >= 0 where allowed
        rows = []
        for layer, heads in enumerate(self.maps):
            for head, w in enumerate(heads):
                spread = entropy(w)  # (T,) per query row
                rows.append(
                    {
                        "layer": layer,
                        "head": head,
                        "entropy": float(spread[1:].mean()) if T > 1 else 0.0,
                        "previous_token": float(np.diagonal(w, offset=-1).mean()) if T > 1 else 0.0,
                        "first_token": float(w[1:, 0].mean()) if T > 1 else 1.0,
                        "mean_distance": float((w * np.maximum(distance, 0)).sum(axis=-1).mean()),
                    }
                )
        return rows


def attention_for_prompt(model: Model, tokenizer: Tokenizer, prompt: str, direction: str = FORWARD) -> Attention:
    """Every layer's attention for `prompt` (its last `block_size` tokens in reading order)."""
    if not prompt:
        raise ValueError("the prompt is empty: pass --prompt with some text")
    ids = to_model_order(tokenizer.encode(prompt), direction)
    ids, cropped = crop_context(ids, model.config.block_size)
    maps = model.attention_maps(np.array([ids], dtype=np.int64))
    return Attention([tokenizer.decode([i]) for i in ids], [m[0] for m in maps], cropped)


def format_head_summary(rows: list[dict]) -> str:
    lines = [f"{'layer':>5} {'head':>4} {'entropy':>8} {'prev tok':>8} {'first tok':>9} {'distance':>8}"]
    for r in rows:
        lines.append(
            f"{r['layer']:>5} {r['head']:>4} {r['entropy']:>8.3f} {r['previous_token']:>8.3f} "
            f"{r['first_token']:>9.3f} {r['mean_distance']:>8.2f}"
        )
    return "\n".join(lines)
