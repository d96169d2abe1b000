"""Evaluation (core/evaluate/perplexity.py): cutting text into sequences, and the report's numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.data.tokenizer import CharTokenizer
from core.evaluate.perplexity import evaluate_texts, format_summary, load_sequences, split_text
from tests.analysis_helpers import CONFIG, MODEL


def test_units_cut_a_document():
    text = "first line\nsecond line\n\n\nthird <|endoftext|>fourth\n"
    assert split_text(text, "document", "f.txt") == (
        ["f.txt", "f.txt"],
        ["first line\nsecond line\n\n\nthird ", "fourth\n"],
    )
    names, texts = split_text(text, "paragraph", "f.txt")
    assert texts == ["first line\nsecond line", "third ", "fourth"] and names == ["f.txt:1", "f.txt:5", "f.txt:5"]
    names, texts = split_text(text, "line", "f.txt")
    assert texts == ["first line", "second line", "third ", "fourth"]
    assert names == ["f.txt:1", "f.txt:2", "f.txt:5", "f.txt:5"]
    with pytest.raises(ValueError, match="unknown unit 'word'"):
        split_text(text, "word")


def test_load_sequences_from_a_folder_with_a_token_limit(tmp_path):
    (tmp_path / "a.txt").write_text("aaaa bbbb\ncccc\n")
    (tmp_path / "b.txt").write_text("dddd\n")
    seqs = load_sequences(str(tmp_path), "line")
    assert seqs.texts == ["aaaa bbbb", "cccc", "dddd"] and seqs.names == ["a.txt:1", "a.txt:2", "b.txt:1"]
    tok = CharTokenizer("abcd \n")
    cut = load_sequences(str(tmp_path), "line", max_tokens=12, tokenizer=tok)
    assert cut.texts == ["aaaa bbbb", "ccc"] and "first 12 tokens" in cut.description
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_sequences(str(tmp_path / "missing.txt"))


def test_report_numbers_agree_with_each_other():
    tok = CharTokenizer("abcdefghij ")
    texts = ["abcdefghij abcdefghij", "j i h g f e", "aaaa"]  # the first is longer than the block of 8
    result = evaluate_texts(MODEL, tok, texts, names=["x", "y", "z"], stride=3, batch_size=4)
    s = result.summary()
    flat = result.all_scores()
    assert s["tokens"] == len(flat) == sum(map(len, texts)) and s["bytes"] == sum(map(len, texts))
    assert s["loss"] == pytest.approx(flat.nll.mean()) and s["perplexity"] == pytest.approx(math.exp(s["loss"]))
    assert s["bits_per_token"] == pytest.approx(s["loss"] / math.log(2))
    assert s["accuracy"] == pytest.approx(flat.correct.mean()) and s["top_k_accuracy"][1] == pytest.approx(
        s["accuracy"]
    )
    assert s["token_perplexity"]["median"] == pytest.approx(float(np.median(np.exp(flat.nll))))
    rows = result.per_sequence()
    assert [r["name"] for r in rows] == ["x", "y", "z"] and [r["tokens"] for r in rows] == [21, 11, 4]
    assert "bits per byte" in format_summary(s) and CONFIG.block_size == 8
