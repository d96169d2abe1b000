"""LAMBADA-style scoring (core/evaluate/lambada.py): how passages are split, scored against an independent
numpy computation, and passages with known answers for a model trained on a pattern."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.data.batches import get_batch
from core.data.direction import BACKWARD, FORWARD, reverse_tokens
from core.data.tokenizer import CharTokenizer
from core.evaluate.lambada import in_context, passages_from_text, read_jsonl, score_examples, split_example, summarize
from core.model import reference
from core.model.config import GPTConfig, TrainConfig
from core.model.params import init_params
from tests.analysis_helpers import CONFIG, MODEL


def test_split_example_forward_and_reverse():
    ex = split_example("The cat sat on the mat.  ")
    assert (ex.context, ex.target, ex.word) == ("The cat sat on the", " mat.", "mat.")
    assert split_example("a b\nc").target == "\nc" and split_example("a b\nc").context == "a b"
    assert split_example("a    b").context == "a   " and split_example("a    b").target == " b"
    rev = split_example("  First, the rest of it", reverse=True)
    assert (rev.target, rev.word, rev.context) == (" First,", "First,", " the rest of it")
    assert split_example("First, the rest", reverse=True).target == "First,"
    for text in ("single", "   ", ""):
        with pytest.raises(ValueError, match="at least two words"):
            split_example(text)


def test_in_context_ignores_case_and_punctuation():
    assert in_context(split_example("He said: Cat, then he saw the cat."))
    assert not in_context(split_example("He said dog and saw the cat"))


def test_read_jsonl_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a b"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2 is not JSON"):
        read_jsonl(bad)
    bad.write_text('{"txt": "a b"}\n')
    with pytest.raises(ValueError, match="no string field 'text'"):
        read_jsonl(bad)
    bad.write_text('\n{"text": "a b"}\n\n')
    assert read_jsonl(bad) == ["a b"]


def test_passages_from_text_keep_the_original_spacing():
    text = "one two\nthree   four five six seven"
    passages = passages_from_text(text, count=10, words=3, seed=0)
    assert passages == ["one two\nthree", " two\nthree   four", "\nthree   four five", " four five six"]
    with pytest.raises(ValueError, match="need more text"):
        passages_from_text("a b", words=5)


@pytest.mark.parametrize("direction", [FORWARD, BACKWARD])
def test_scores_match_an_independent_numpy_computation(direction):
    tok = CharTokenizer("abcdefghij ")
    texts = ["abc de fgh", "a b", "jihgf edcba ab cd", "bbbbbbbb a bbbbbbbb"]  # targets of 8-9 tokens: too long
    with pytest.raises(ValueError, match="more than block_size - 1"):
        score_examples(MODEL, tok, texts, direction)
    texts = texts[:3]
    records = score_examples(MODEL, tok, texts, direction, batch_size=2)
    for text, record in zip(texts, records):
        words = text.split(" ")
        if direction == FORWARD:
            context, target = " ".join(words[:-1]), " " + words[-1]
            read, tgt = tok.encode(context), tok.encode(target)
        else:
            context, target = " " + " ".join(words[1:]), words[0]
            read, tgt = tok.encode(context)[::-1], tok.encode(target)[::-1]
        seq = ([tok.eot_id] + read + tgt)[-(CONFIG.block_size + 1) :]
        logits = reference.forward(CONFIG, MODEL.params, np.array([seq[:-1]]))[0][0]
        log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        positions = range(len(seq) - 1 - len(tgt), len(seq) - 1)
        assert record["logprob"] == pytest.approx(sum(log_p[p, t] for p, t in zip(positions, tgt)), abs=1e-5)
        assert record["predicted"] == all(log_p[p].argmax() == t for p, t in zip(positions, tgt))
        assert record["target_tokens"] == len(tgt) and record["context_tokens"] == len(read)


@pytest.fixture(scope="module")
def pattern_models():
    """Forward and backward models trained (torch, a few dozen steps) on "ab cd ab cd ...": after
    "ab " comes "cd", after "cd " comes "ab"."""
    from backends import get_backend

    tok = CharTokenizer("abcd ")
    stream = np.array(tok.encode("ab cd " * 400), dtype=np.uint16)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    train = TrainConfig(lr=2e-2, warmup_steps=0, batch_size=8)
    models = {}
    for direction, tokens in ((FORWARD, stream), (BACKWARD, reverse_tokens(stream))):
        model = get_backend("torch").build(config, init_params(config, seed=0), train)
        for step in range(40):
            x, y = get_batch(tokens, config.block_size, 8, 0, step)  # (B, T) each
            model.train_step(x[None], y[None], lr=2e-2)  # one micro-batch: (1, B, T)
        models[direction] = model
    return tok, models


def test_known_answers_of_a_pattern_model(pattern_models, tmp_path):
    tok, models = pattern_models
    data = tmp_path / "lambada.jsonl"
    passages = ["ab cd ab cd ab cd", "ab cd ab cd ab ab", "cd ab cd ab cd ab"]
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in passages))
    records = score_examples(models[FORWARD], tok, read_jsonl(data), FORWARD)
    assert [r["predicted"] for r in records] == [True, False, True]
    assert records[0]["logprob"] > np.log(0.5) and records[1]["logprob"] < records[0]["logprob"] - 2
    summary = summarize(records)
    assert summary["overall"]["accuracy"] == pytest.approx(2 / 3)
    assert summary["breakdown"]["target in context"]["count"] == 3
    assert summary["breakdown"]["multi-token target"]["count"] == 3  # " cd" is three characters
    # The mirror task: the first word from the rest, with the backward model.
    reverse = ["cd ab cd ab", "ab ab cd ab", "ab cd ab cd"]
    records = score_examples(models[BACKWARD], tok, reverse, BACKWARD)
    assert [r["predicted"] for r in records] == [True, False, True]
