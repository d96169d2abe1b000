"""Scoring tokens (core/evaluate/scoring.py): stride windows score every token exactly once, the scores equal
an independent numpy computation from `core.model.reference`, and a backward model is a forward model run
on the reversed tokens. No framework needed: the model here is the numpy reference itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.data.direction import BACKWARD, FORWARD, require_direction, to_model_order
from core.data.tokenizer import CharTokenizer
from core.evaluate.perplexity import evaluate_texts
from core.evaluate.scoring import score_sequences, score_texts, score_windows, stride_windows
from core.model import reference
from core.train.meta import CheckpointMeta
from tests.analysis_helpers import CONFIG, MODEL, ReferenceModel


def log_probs_of(model: ReferenceModel, context: list[int], token: int) -> float:
    """ln P(token | context) straight from the reference logits, in float64."""
    logits = reference.forward(model.config, model.params, np.array([context]))[0][0, -1]
    return float(logits[token] - np.log(np.exp(logits - logits.max()).sum()) - logits.max())


@given(n=st.integers(0, 120), block=st.integers(1, 24), data=st.data())
def test_stride_windows_score_every_token_exactly_once(n, block, data):
    stride = data.draw(st.integers(1, block))
    windows = stride_windows(n, block, stride)
    scored = [p for _, end, first in windows for p in range(first, end + 1)]
    assert scored == list(range(1, n))  # every target once, in order
    for start, end, first in windows:
        assert 0 <= start < first <= end and end - start <= block
        for p in range(first, end + 1):  # the context of target p is tokens[start:p]
            assert p - start >= min(p, block - stride + 1)


def test_stride_outside_the_block_is_refused():
    with pytest.raises(ValueError, match="stride=9 is invalid"):
        stride_windows(20, 8, 9)


def test_stride_one_is_a_sliding_window_of_full_context():
    tokens = np.random.default_rng(1).integers(0, 12, 30).tolist()
    scores = score_sequences(MODEL, [tokens], stride=1, batch_size=5)[0]
    expected = [log_probs_of(MODEL, tokens[max(0, p - 8) : p], tokens[p]) for p in range(1, 30)]
    np.testing.assert_allclose(scores.logprob, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 3, 8])
def test_perplexity_is_exp_mean_nll_of_the_reference(stride):
    """A text shorter than the block: one window whatever the stride, and every token is scored after
    <|endoftext|>. The numbers are recomputed here from the reference logits alone."""
    tok = CharTokenizer("abcdefghij ")  # 11 characters + <|endoftext|> = CONFIG.vocab_size
    texts = ["abc dea", "hij ga", "b"]
    result = evaluate_texts(MODEL, tok, texts, stride=stride, batch_size=2)
    nll = []
    for text in texts:
        seq = [tok.eot_id, *tok.encode(text)]
        log_probs = reference.forward(CONFIG, MODEL.params, np.array([seq[:-1]]))[0][0]
        log_probs = log_probs - np.log(np.exp(log_probs).sum(axis=-1, keepdims=True))
        nll.append(-log_probs[np.arange(len(seq) - 1), seq[1:]])
    summary = result.summary()
    flat = np.concatenate(nll)
    assert summary["tokens"] == len(flat) == sum(len(t) for t in texts)
    assert summary["perplexity"] == pytest.approx(math.exp(flat.mean()), rel=1e-5)
    assert summary["bits_per_byte"] == pytest.approx(flat.sum() / math.log(2) / sum(map(len, texts)), rel=1e-5)
    for got, want in zip(result.sequence_perplexities(), nll):
        assert got == pytest.approx(math.exp(want.mean()), rel=1e-5)


def test_scores_do_not_depend_on_batching_or_padding():
    rng = np.random.default_rng(2)
    windows = [(rng.integers(0, 12, n), rng.integers(0, 12, n)) for n in (1, 3, 5, 8, 8, 2)]
    alone = [score_windows(MODEL, [w], batch_size=1)[0] for w in windows]
    together = score_windows(MODEL, windows, batch_size=4)
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a.logprob, b.logprob, atol=1e-6)
        np.testing.assert_array_equal(a.rank, b.rank)
        np.testing.assert_allclose(a.entropy, b.entropy, atol=1e-6)


def test_rank_entropy_and_argmax_match_the_distribution():
    tokens = np.random.default_rng(3).integers(0, 12, 8)
    s = score_windows(MODEL, [(tokens[:-1], tokens[1:])])[0]
    logits = reference.forward(CONFIG, MODEL.params, tokens[None, :-1])[0][0]
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    picked = log_p[np.arange(7), tokens[1:]]
    np.testing.assert_array_equal(s.rank, (log_p > picked[:, None]).sum(-1))
    np.testing.assert_allclose(s.entropy, -(np.exp(log_p) * log_p).sum(-1), atol=1e-6)
    np.testing.assert_array_equal(s.correct, log_p.argmax(-1) == tokens[1:])
    assert s.correct.any() or (s.rank > 0).all()


@given(st.lists(st.integers(0, 10), min_size=1, max_size=30), st.integers(1, 8))
def test_a_backward_model_is_a_forward_model_on_reversed_tokens(ids, stride):
    eot = 11
    backward = score_texts(MODEL, [ids], eot, BACKWARD, stride=stride)[0]
    forward_on_reversed = score_texts(MODEL, [ids[::-1]], eot, FORWARD, stride=stride)[0]
    np.testing.assert_allclose(backward.logprob, forward_on_reversed.logprob[::-1], atol=1e-6)
    np.testing.assert_array_equal(backward.rank, forward_on_reversed.rank[::-1])
    assert len(backward) == len(ids)


def test_direction_helpers():
    assert CheckpointMeta.from_json({}).direction == FORWARD
    assert CheckpointMeta.from_json({"direction": "backward"}).direction == BACKWARD
    assert to_model_order([1, 2, 3], BACKWARD) == [3, 2, 1] and to_model_order([1, 2], FORWARD) == [1, 2]
    with pytest.raises(ValueError, match="direction='sideways'"):
        CheckpointMeta.from_json({"direction": "sideways"})
    with pytest.raises(ValueError, match="needs a backward model.*train --reverse"):
        require_direction(FORWARD, BACKWARD, "lambada --reverse")
