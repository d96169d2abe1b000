"""core.data.tokenizer: both kinds round-trip text, share the eot conventions, and save and load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.data.tokenizer import (
    EOT,
    BPETokenizer,
    CharTokenizer,
    min_vocab_size,
    tokenizer_from_json,
    train_tokenizer,
)

# English-ish text in the style of children's stories, where "Once" is frequent.
SUBJECTS = ["Lily", "Tom", "the little dog", "a big bird", "the girl", "her mom", "the old man"]
VERBS = ["saw", "liked", "wanted", "found", "played with", "looked at", "was happy with"]
OBJECTS = ["a red ball", "the tree", "a small cat", "the sun", "a toy car", "the park", "some flowers"]


def story(i: int) -> str:
    s, v, o = SUBJECTS[i % 7], VERBS[(i // 7) % 7], OBJECTS[(i // 49) % 7]
    return f'Once upon a time, {s} {v} {o}. {s.capitalize()} said, "Once more!" Once, it was fun. The end.\n'


ENGLISH = [story(i) for i in range(400)] + ["Ünïcödé, 日本語, emoji 🙂 and tabs\tand\r\nnewlines."]


@pytest.fixture(scope="session")
def bpe() -> BPETokenizer:
    return train_tokenizer("bpe", ENGLISH, vocab_size=400)


@pytest.fixture(scope="session")
def char() -> CharTokenizer:
    return train_tokenizer("char", ENGLISH)


@given(text=st.text(max_size=200))
def test_bpe_round_trips_any_text(bpe, text):
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text


@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=50).map(lambda t: t + EOT + t))
def test_bpe_spells_out_eot_inside_text(bpe, text):
    ids = bpe.encode(text)
    assert bpe.eot_id not in ids  # only the data pipeline inserts the separator
    assert bpe.decode(ids) == text


@given(text=st.text(alphabet=sorted(set("".join(ENGLISH))), max_size=200))
def test_char_round_trips_on_its_alphabet(char, text):
    ids = char.encode(text)
    assert all(0 <= i < char.eot_id for i in ids)
    assert char.decode(ids) == text


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_eot_decodes_to_its_text_in_both_kinds(kind, bpe, char):
    tok = {"bpe": bpe, "char": char}[kind]
    ids = tok.encode("Once upon") + [tok.eot_id] + tok.encode("The end.")
    assert tok.decode(ids) == f"Once upon{EOT}The end."
    assert tok.decode(np.array(ids, dtype=np.uint16)) == f"Once upon{EOT}The end."  # numpy ids work too
    assert tok.mask_id is not None and tok.mask_id != tok.eot_id
    assert tok.decode([tok.mask_id]) == "[MASK]"
    assert tok.kind == kind


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_ids_outside_the_vocabulary_are_an_error(kind, bpe, char):
    tok = {"bpe": bpe, "char": char}[kind]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([0, tok.vocab_size])


def test_once_is_not_split_into_letters(bpe):
    assert len(bpe.encode("Once")) <= 2
    assert len(bpe.encode(" Once")) <= 2
    assert bpe.decode(bpe.encode("Once upon a time")) == "Once upon a time"
    assert len(bpe.encode("Once upon a time")) < len("Once upon a time") // 2


def test_bpe_vocabulary_and_special_token(bpe):
    assert bpe.vocab_size == 400
    assert bpe.decode([bpe.eot_id]) == EOT
    assert len(bpe.encode_batch(["Once", "", "a b"])) == 3


def test_bpe_vocab_too_small_names_the_minimum():
    minimum = min_vocab_size("bpe")
    assert minimum == 258  # 256 bytes, <|endoftext|> and [MASK]
    with pytest.raises(ValueError, match=f"at least {minimum}"):
        train_tokenizer("bpe", ENGLISH, vocab_size=minimum - 1)
    tok = train_tokenizer("bpe", ["tiny"], vocab_size=minimum)  # the minimum itself works: bytes only
    assert tok.decode(tok.encode("héllo 🙂")) == "héllo 🙂"


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="bpe, char"):
        train_tokenizer("word", ENGLISH)


def test_char_vocabulary_is_sorted_characters_then_special_tokens(char):
    assert char.chars == sorted(set("".join(ENGLISH)))
    assert char.vocab_size == len(char.chars) + 2
    assert (char.eot_id, char.mask_id) == (len(char.chars), len(char.chars) + 1)
    assert char.encode("".join(char.chars)) == list(range(len(char.chars)))


def test_char_ignores_vocab_size():
    assert train_tokenizer("char", ["abc"], vocab_size=3).vocab_size == 5  # a, b, c, eot, mask
    with pytest.raises(ValueError, match="non-empty"):
        train_tokenizer("char", ["", ""])


def test_char_unknown_characters_are_named(char):
    with pytest.raises(ValueError) as info:
        char.encode("Once € and ¥ and §")
    message = str(info.value)
    assert "'€'" in message and "'¥'" in message and "'§'" in message
    assert "bpe" in message and "retrain" in message


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_json_round_trip(kind, bpe, char):
    tok = {"bpe": bpe, "char": char}[kind]
    again = tokenizer_from_json(tok.to_json())  # what a checkpoint's tokenizer.json holds
    assert type(again) is type(tok)
    fields = ("kind", "vocab_size", "eot_id", "mask_id")
    assert [getattr(again, f) for f in fields] == [getattr(tok, f) for f in fields]
    assert again.to_json() == tok.to_json()
    text = ENGLISH[-1] + ENGLISH[0]
    assert again.encode(text) == tok.encode(text)
    assert again.decode(again.encode(text)) == text


def test_bpe_json_is_a_hugging_face_tokenizer_file(bpe, tmp_path):
    from tokenizers import Tokenizer

    path = tmp_path / "tokenizer.json"
    path.write_text(bpe.to_json())
    hf = Tokenizer.from_file(str(path))
    assert hf.encode("Once upon a time").ids == bpe.encode("Once upon a time")
    assert json.loads(path.read_text())["model"]["type"] == "BPE"


def test_loading_errors():
    with pytest.raises(ValueError, match="unrecognised"):
        tokenizer_from_json(json.dumps({"kind": "word"}))
    with pytest.raises(ValueError, match="not a tokenizer JSON"):
        tokenizer_from_json("{not json")
