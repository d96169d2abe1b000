"""Masked-token prediction (BERT's objective) on the same model, data and loop.

With `--objective mlm` the model is bidirectional (`causal=False`) and learns to fill in hidden
tokens instead of predicting the next one. Each training window hides 15% of its positions: of
those, 80% become `[MASK]`, 10% a random token and 10% stay as they are (so the model cannot
assume that an unmasked-looking token is never a target). The loss is taken over the chosen
positions only; every other target is IGNORE_INDEX, which both backends already skip.
"""

from __future__ import annotations

import numpy as np

from core.model.interface import IGNORE_INDEX
from core.model.softmax import entropy, log_softmax

MASK_FRACTION = 0.15  # positions chosen per window
REPLACE_WITH_MASK, REPLACE_WITH_RANDOM = 0.8, 0.1  # of the chosen; the remaining 0.1 stay unchanged


def mask_tokens(
    tokens: np.ndarray, rng: np.random.Generator, mask_id: int, vocab_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) for tokens of any shape: targets hold the original token at chosen
    positions and IGNORE_INDEX elsewhere; at least one position per window is chosen."""
    tokens = np.asarray(tokens, dtype=np.int64)
    chosen = rng.random(tokens.shape) < MASK_FRACTION
    # A window with nothing chosen would contribute no loss: choose one position in it.
    empty = ~chosen.any(axis=-1)
    if empty.any():
        rows = np.nonzero(empty)
        chosen[(*rows, rng.integers(0, tokens.shape[-1], size=len(rows[0])))] = True
    action = rng.random(tokens.shape)
    inputs = tokens.copy()
    inputs[chosen & (action < REPLACE_WITH_MASK)] = mask_id
    randomize = chosen & (action >= REPLACE_WITH_MASK) & (action < REPLACE_WITH_MASK + REPLACE_WITH_RANDOM)
    inputs[randomize] = rng.integers(0, vocab_size, size=int(randomize.sum()))
    targets = np.where(chosen, tokens, IGNORE_INDEX)
    return inputs, targets


def mlm_batch(x: np.ndarray, seed: int, index: int, mask_id: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The masked version of batch `index`: a pure function of (seed, index), like the batches."""
    return mask_tokens(x, np.random.default_rng([seed, index, 3]), mask_id, vocab_size)


def fill_masks(logits: np.ndarray, inputs: np.ndarray, mask_id: int, top_k: int = 5) -> list[dict]:
    """For each [MASK] in `inputs` (T,) with logits (T, V): the top-k fillers, their probabilities
    and the entropy (nats) of the model's distribution at that position."""
    log_probs = log_softmax(logits)
    results = []
    for position in np.nonzero(np.asarray(inputs) == mask_id)[0]:
        probs = np.exp(log_probs[position])
        best = np.argsort(-probs, kind="stable")[:top_k]
        spread = float(entropy(probs))
        results.append(
            {"position": int(position), "candidates": [(int(t), float(probs[t])) for t in best], "entropy": spread}
        )
    return results


def encode_masked_text(tokenizer, text: str, block_size: int) -> list[int]:
    """Token ids of `text` with each literal "[MASK]" turned into the mask token.

    Byte-level BPE tokens carry their leading space (" in", " return"), as the masked tokens did in
    training; so the one space written before a [MASK] belongs to the hidden token, not to the text
    before it ("for line [MASK] text" hides " in", not "in" after a lone " " token)."""
    from core.data.tokenizer import MASK

    if MASK not in text:
        raise ValueError(f"the text has no {MASK}: write it where a token should be filled in")
    ids: list[int] = []
    pieces = text.split(MASK)
    for i, piece in enumerate(pieces):
        if i:
            ids.append(tokenizer.mask_id)
        if tokenizer.kind == "bpe" and i < len(pieces) - 1 and piece.endswith(" "):
            piece = piece[:-1]
        ids.extend(tokenizer.encode(piece) if piece else [])
    if len(ids) > block_size:
        raise ValueError(f"the text has {len(ids)} tokens, more than the model's block_size={block_size}: shorten it")
    return ids


def predict_masked(model, tokenizer, text: str, top_k: int = 5) -> list[dict]:
    """Top-k fillers of every [MASK] in `text`, with probabilities and entropy, by a bidirectional model."""
    if model.config.causal:
        raise ValueError(
            "this model predicts the next token (causal); predict-masked needs one trained with --objective mlm"
        )
    ids = encode_masked_text(tokenizer, text, model.config.block_size)
    logits = model.logits(np.array([ids]))[0]  # (T, V)
    filled = fill_masks(logits, np.array(ids), tokenizer.mask_id, top_k)
    for mask in filled:
        mask["candidates"] = [(tokenizer.decode([t]), p) for t, p in mask["candidates"]]
    return filled
