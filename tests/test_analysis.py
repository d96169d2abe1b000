"""Token analysis, attention summaries, bidirectional analysis and code checks, on the numpy
reference model (core/evaluate/analysis.py, attention_maps.py, bidirectional.py, codecheck.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.data.direction import BACKWARD, FORWARD
from core.data.tokenizer import CharTokenizer
from core.evaluate.analysis import analyze_text, colour_view, format_spans, format_table
from core.evaluate.attention_maps import attention_for_prompt
from core.evaluate.bidirectional import analyze_bidirectional, split_words, surprising
from core.evaluate.codecheck import extract_function, judge, keywords_used, signatures_in
from core.evaluate.scoring import score_texts
from core.model import reference
from tests.analysis_helpers import CONFIG, MODEL

TOK = CharTokenizer("abcdefghij ")


def test_token_analysis_rows_spans_and_views():
    result = analyze_text(MODEL, TOK, "abcdefghij jihg", stride=4)
    rows = result.rows()
    assert [r["token"] for r in rows] == list("abcdefghij jihg")
    expected = score_texts(MODEL, [TOK.encode("abcdefghij jihg")], TOK.eot_id, FORWARD, stride=4)[0]
    np.testing.assert_allclose([r["logprob"] for r in rows], expected.logprob)
    spans = result.spans(span=3, count=2)
    means = np.convolve(expected.logprob, np.ones(3) / 3, mode="valid")
    best, worst = spans["most_predictable"], spans["least_predictable"]
    assert best[0]["mean_logprob"] == pytest.approx(means.max()) and worst[0]["mean_logprob"] == pytest.approx(
        means.min()
    )
    for picked in (best, worst):
        assert len(picked) == 2 and abs(picked[0]["start"] - picked[1]["start"]) >= 3  # no overlap
        assert picked[0]["text"] == "abcdefghij jihg"[picked[0]["start"] : picked[0]["end"]]
    plain = colour_view(result, color=False)
    assert plain.replace("[", "").replace("]", "") == "abcdefghij jihg"
    low = [r["token"] for r in rows if r["prob"] < 0.01]
    assert plain.count("[[") == len(low)
    coloured = colour_view(result, color=True)
    assert "\033[" in coloured and coloured.count("\033[0m") == len(rows)
    assert len(format_table(result, limit=5).splitlines()) == 7 and "least predictable" in format_spans(spans)
    with pytest.raises(ValueError, match="empty"):
        analyze_text(MODEL, TOK, "")


def test_attention_summary_of_the_reference_maps():
    att = attention_for_prompt(MODEL, TOK, "abcdefghij")  # 10 tokens, block 8: the last 8 are kept
    assert att.cropped == 2 and att.tokens == list("cdefghij")
    maps = reference.forward(CONFIG, MODEL.params, np.array([TOK.encode("cdefghij")]))[1]
    np.testing.assert_allclose(att.maps[0], maps[0][0], atol=1e-6)
    heads = att.head_summary()
    assert len(heads) == CONFIG.n_layer * CONFIG.n_head
    w = maps[0][0, 1]
    assert heads[1]["previous_token"] == pytest.approx(np.diagonal(w, -1).mean(), abs=1e-6)
    assert 0 <= heads[0]["entropy"] <= math.log(8)
    backward = attention_for_prompt(MODEL, TOK, "abc", BACKWARD)
    assert backward.tokens == ["c", "b", "a"]


def test_words_own_their_tokens():
    words = split_words("ab  cd\nef ", TOK.__class__("abcdef \n"))
    assert words.words == ["ab", "cd", "ef"]
    tok = TOK.__class__("abcdef \n")
    pieces = [tok.decode(words.ids[a:b]) for a, b in words.spans]
    assert pieces == ["ab", " cd", "\nef"] and tok.decode(words.ids) == "ab  cd\nef "
    with pytest.raises(ValueError, match="no words"):
        split_words("   ", TOK)


def test_bidirectional_numbers_from_both_directions():
    text = "abc de fg hij"
    result = analyze_bidirectional(MODEL, MODEL, TOK, text, stride=4)
    words = split_words(text, TOK)
    fwd = score_texts(MODEL, [words.ids], TOK.eot_id, FORWARD, stride=4)[0].logprob
    bwd = score_texts(MODEL, [words.ids], TOK.eot_id, BACKWARD, stride=4)[0].logprob
    for row, (a, b) in zip(result["words"], words.spans):
        assert row["forward_logprob"] == pytest.approx(fwd[a:b].sum())
        assert row["backward_logprob"] == pytest.approx(bwd[a:b].sum())
        assert row["asymmetry"] == pytest.approx(row["forward_logprob"] - row["backward_logprob"])
    # Neighbour-only: "de" after "<|endoftext|>abc" alone, and before " fg" alone (read backwards).
    row = result["words"][1]
    seq = [TOK.eot_id, *TOK.encode("abc de")]
    lp = _log_probs(seq)
    assert row["forward_neighbour_logprob"] == pytest.approx(lp[3, seq[4]] + lp[4, seq[5]] + lp[5, seq[6]], abs=1e-5)
    seq = [TOK.eot_id, *TOK.encode(" de fg")[::-1]]
    lp = _log_probs(seq)
    assert row["backward_neighbour_logprob"] == pytest.approx(sum(lp[p - 1, seq[p]] for p in (4, 5, 6)), abs=1e-5)
    # The first word has no left neighbour: its neighbour-only probability is its full-context one.
    first = result["words"][0]
    assert first["forward_neighbour_logprob"] == pytest.approx(first["forward_logprob"], abs=1e-6)
    s = result["summary"]
    assert s["words"] == 4 and s["text_logprob_forward"] == pytest.approx(fwd.sum())
    ranked = surprising(result["words"], 4)
    keys = [max(r["forward_logprob"], r["backward_logprob"]) / r["tokens"] for r in ranked]
    assert keys == sorted(keys) and len(ranked) == 4


def _log_probs(seq: list[int]) -> np.ndarray:
    logits = reference.forward(CONFIG, MODEL.params, np.array([seq[:-1]]))[0][0]
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


SOURCE = '''
import os

class Thing:
    @property
    def name(self,
             other=None):
        # a comment before the body is not part of the signature
        """The name."""
        if other:
            return other
        return "thing"

def one_liner(): return 1

def gen(items):
    for item in items:
        yield item  # "return" in a comment does not count
'''


def test_signatures_keep_their_indentation_and_skip_one_liners():
    sigs = signatures_in(SOURCE)
    assert sorted(s.name for s in sigs) == ["gen", "name"]
    name = next(s for s in sigs if s.name == "name")
    assert name.header == "    def name(self,\n             other=None):"
    assert keywords_used(name.body.replace("        ", "", 1)) >= {"if", "return"}
    gen = next(s for s in sigs if s.name == "gen")
    assert keywords_used("\n".join(line[4:] for line in gen.body.splitlines())) == {"for", "yield"}
    assert signatures_in("def broken(:\n") == []


def test_judging_completions_by_the_documented_rules():
    header = "    def f(self, x):"
    good = '\n        """Double x."""\n        return x * 2\n\n    def g(self):\n        pass'
    source, lines = extract_function(header, good, truncated=False)
    assert lines == 2 and source.endswith("return x * 2")  # stops at the next method
    verdict = judge(header, good, truncated=False, expected={"return", "if"})
    assert verdict["parses"] and verdict["docstring"] and verdict["recall"] == 0.5
    # Cut by the token limit: the partial last line goes; an open block gets a `pass`.
    cut = "\n        if x:\n            return x\n        for i in ra"
    verdict = judge(header, cut, truncated=True, expected={"return"})
    assert verdict["parses"] and not verdict["docstring"] and verdict["recall"] == 1.0
    assert judge(header, "\n        for i in x:\n        y = (", truncated=True, expected=set())["parses"]
    assert not judge(header, "\n        y = (1,\n    z", truncated=False, expected=set())["parses"]
    assert not judge(header, "\n\nclass A:", truncated=False, expected=set())["parses"]  # no body at all
    assert judge(header, "\n        x = 'return'", truncated=False, expected={"return"})["recall"] == 0.0
