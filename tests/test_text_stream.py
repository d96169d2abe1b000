"""`core.serve.text_stream`: streamed text never shows part of a stop string, and ends just before one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.data.tokenizer import CharTokenizer
from core.serve.text_stream import TextStream

ALPHABET = "abS"
TOKENIZER = CharTokenizer(ALPHABET)


@given(text=st.text(ALPHABET, max_size=30), stops=st.lists(st.text(ALPHABET, min_size=1, max_size=4), max_size=3))
def test_streamed_pieces_join_to_the_text_cut_before_the_first_stop(text, stops):
    stream = TextStream(TOKENIZER, stops)
    pieces = [stream.push(t) for t in TOKENIZER.encode(text)]
    pieces.append(stream.finish())
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    # Where the first stop string ends decides when streaming stops; the text is cut where that one starts.
    ends = [(text.find(s) + len(s), text.find(s)) for s in stops if s in text]
    expected = text[: min(ends)[1]] if ends else text
    assert "".join(pieces) == expected
    assert stream.stopped == bool(found)


def test_a_possible_stop_string_is_held_back_until_it_cannot_be_one():
    stream = TextStream(TOKENIZER, ["SS"])
    assert [stream.push(t) for t in TOKENIZER.encode("aSa")] == ["a", "", "Sa"]
    assert stream.push(TOKENIZER.encode("S")[0]) == "" and stream.push(TOKENIZER.encode("S")[0]) == ""
    assert stream.stopped and stream.finish() == ""
