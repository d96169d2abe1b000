"""Masked-token prediction: the masking recipe, the loss over chosen positions only, the
bidirectional model in the reference and both backends, and a tiny model that learns to fill."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.data.masking import encode_masked_text, fill_masks, mask_tokens, mlm_batch
from core.data.tokenizer import min_vocab_size, train_tokenizer
from core.model import reference
from core.model.config import GPTConfig, TrainConfig
from core.model.interface import IGNORE_INDEX
from core.model.params import init_params

CONFIG = GPTConfig(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=16, causal=False)
MASK_ID = 22


@given(st.integers(0, 2**32 - 1))
def test_masking_recipe(seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 20, (64, 128))
    inputs, targets = mask_tokens(tokens, rng, MASK_ID, 22)
    chosen = targets != IGNORE_INDEX
    assert np.array_equal(targets[chosen], tokens[chosen])  # targets are the original tokens
    assert np.array_equal(inputs[~chosen], tokens[~chosen])  # what is not chosen is untouched
    assert chosen.any(axis=-1).all()  # every window has something to predict
    n = chosen.sum()

    def near(count: int, total: int, p: float) -> bool:  # within 5 binomial standard deviations
        return abs(count / total - p) < 5 * np.sqrt(p * (1 - p) / total)

    assert near(n, tokens.size, 0.15)
    masked = (inputs == MASK_ID) & chosen
    kept = (inputs == tokens) & chosen  # includes random replacements that drew the same token
    assert near(masked.sum(), n, 0.8)
    assert near((chosen & ~masked & ~kept).sum(), n, 0.1 * 21 / 22)  # random, not the original
    assert near(kept.sum(), n, 0.1 + 0.1 / 22)


def test_mlm_batches_are_pure_functions_of_seed_and_index():
    x = np.arange(40).reshape(2, 20) % 20
    a, b = mlm_batch(x, 1, 7, MASK_ID, 22), mlm_batch(x, 1, 7, MASK_ID, 22)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[1], mlm_batch(x, 1, 8, MASK_ID, 22)[1])


def test_bidirectional_reference_sees_the_future():
    params = init_params(CONFIG, seed=1)
    tokens = np.random.default_rng(0).integers(0, 22, (1, 12))
    changed = tokens.copy()
    changed[0, -1] = (changed[0, -1] + 1) % 22
    before, after = reference.logits(CONFIG, params, tokens), reference.logits(CONFIG, params, changed)
    assert np.abs(before[0, 0] - after[0, 0]).max() > 1e-6  # the first position felt the last token
    causal = CONFIG.replace(causal=True)
    assert np.array_equal(
        reference.logits(causal, params, tokens)[0, :-1], reference.logits(causal, params, changed)[0, :-1]
    )


def test_bidirectional_backends_match_reference_and_sees_the_future(backend):
    params = init_params(CONFIG, seed=2)
    tokens = np.random.default_rng(1).integers(0, 22, (2, 12))
    model = backend.build(CONFIG, params)
    assert np.abs(model.logits(tokens) - reference.logits(CONFIG, params, tokens)).max() < 1e-4
    maps = model.attention_maps(tokens)
    assert np.abs(maps[0] - reference.forward(CONFIG, params, tokens)[1][0]).max() < 1e-5
    assert (maps[0][..., 0, 1:] > 0).all()  # the first position attends to later ones
    with pytest.raises(ValueError, match="cannot generate"):
        model.prefill(tokens)


def test_loss_counts_only_the_chosen_positions(backend):
    params = init_params(CONFIG, seed=3)
    tokens = np.random.default_rng(2).integers(0, 22, (2, 12))
    inputs, targets = mask_tokens(tokens, np.random.default_rng(3), MASK_ID, 22)
    log_probs = reference.forward(CONFIG, params, inputs)[0]
    log_probs = (
        log_probs
        - np.log(np.exp(log_probs - log_probs.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - log_probs.max(-1, keepdims=True)
    )
    chosen = targets != IGNORE_INDEX
    expected = -np.take_along_axis(log_probs, np.where(chosen, targets, 0)[..., None], -1)[..., 0][chosen].mean()
    assert backend.build(CONFIG, params).loss(inputs, targets) == pytest.approx(expected, rel=1e-5)


def test_bidirectional_gradients_agree_between_backends(backends):
    params = init_params(CONFIG, seed=4)
    inputs, targets = mask_tokens(
        np.random.default_rng(5).integers(0, 22, (2, 12)), np.random.default_rng(6), MASK_ID, 22
    )
    torch_grads = backends["torch"].build(CONFIG, params).gradients(inputs, targets)
    tiny_grads = backends["tinygrad"].build(CONFIG, params).gradients(inputs, targets)
    for name, g in torch_grads.items():
        assert np.abs(g - tiny_grads[name]).max() < 1e-5, name


def test_a_tiny_model_learns_to_fill_a_fixed_pattern(backends):
    """A cyclic sequence 0..19: the hidden token is always its left neighbour plus one."""
    config = CONFIG.replace(n_layer=1, n_embd=32)
    stream = np.arange(4000) % 20
    model = backends["torch"].build(config, init_params(config, seed=0), TrainConfig(lr=3e-3, weight_decay=0.0))
    rng = np.random.default_rng(0)
    for step in range(300):
        starts = rng.integers(0, len(stream) - 12, 16)
        x = np.stack([stream[s : s + 12] for s in starts])
        inputs, targets = mlm_batch(x, 0, step, MASK_ID, 22)
        model.train_step(inputs, targets, 3e-3)
    test = np.stack([stream[s : s + 12] for s in range(100, 116)])
    inputs, targets = mask_tokens(test, np.random.default_rng(99), MASK_ID, 22)
    logits = model.logits(inputs)
    chosen = targets != IGNORE_INDEX
    accuracy = (logits.argmax(-1)[chosen] == targets[chosen]).mean()
    assert accuracy > 0.9  # chance is 1/20
    filled = fill_masks(logits[0], inputs[0], MASK_ID, top_k=3)
    assert [f["position"] for f in filled] == list(np.nonzero(inputs[0] == MASK_ID)[0])
    assert all(0 <= f["entropy"] and len(f["candidates"]) == 3 for f in filled)


def test_the_space_before_a_mask_belongs_to_the_hidden_token():
    text = "for line [MASK] text"
    bpe = train_tokenizer("bpe", ["for line in text: pass\n"] * 20, vocab_size=min_vocab_size("bpe") + 20)
    assert encode_masked_text(bpe, text, 64) == bpe.encode("for line") + [bpe.mask_id] + bpe.encode(" text")
    char = train_tokenizer("char", ["for line in text"])  # characters: the space stays a token of its own
    assert encode_masked_text(char, text, 64) == char.encode("for line ") + [char.mask_id] + char.encode(" text")
