"""Reading direction: forward models predict the next token, backward models the previous one.

A backward model is the same GPT trained on the token streams reversed (`train --reverse`): it
reads a text from its end and predicts, at each step, the token that comes *before* what it has
seen. Nothing in the network changes; only the order in which tokens are fed and scored. Its
checkpoint records `"direction": "backward"` in meta.json (missing means "forward", as in
checkpoints written before directions existed).

Conventions every command follows:

- Text is always encoded in reading order (left to right) with the ordinary tokenizer; a backward
  model is then given `to_model_order(ids)`, the ids reversed. Token merges are not redone, so a
  backward model sees exactly the tokens of the forward text, in the other order.
- Scores are handed back in text order: "the probability of token i" means P(token i | left
  context) for a forward model and P(token i | right context) for a backward one.
- Where only one direction makes sense (continuing text to the right, predicting a last word), a
  model of the other direction is refused with `require_direction`, whose message names the fix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FORWARD, BACKWARD = "forward", "backward"
DIRECTIONS = (FORWARD, BACKWARD)


def require_direction(have: str, wanted: str, what: str, path: object = "") -> None:
    """Raise ValueError unless a checkpoint's direction `have` is `wanted`; `what` names the task."""
    if have == wanted:
        return
    fix = "train one with `train --reverse`" if wanted == BACKWARD else "train one without --reverse"
    where = f" {path}" if path else ""
    raise ValueError(f"{what} needs a {wanted} model, but checkpoint{where} is a {have} model: {fix}")


def to_model_order(ids: Sequence[int] | np.ndarray, direction: str) -> list[int]:
    """Text-order ids as the model reads them: unchanged for forward, reversed for backward."""
    ids = [int(i) for i in ids]
    return ids if direction == FORWARD else ids[::-1]


def reverse_tokens(tokens: np.ndarray) -> np.ndarray:
    """A token stream in reverse order, as a view (no copy of a memory-mapped array)."""
    return np.asarray(tokens)[::-1]
