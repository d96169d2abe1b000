"""core.data.corpus and core.data.dataset: loading, skipping, splitting, tokenizing with a cache, and batches."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import core.data.batches as batches_module
import core.data.dataset as data_module
from core.data.batches import BatchPrefetcher, check_length, eval_batches, get_batch
from core.data.corpus import Corpus, load_corpus, split_documents
from core.data.dataset import cached_tokens, encode_documents, prepare_dataset, token_dtype
from core.data.tokenizer import EOT, train_tokenizer

TEXT = "Once upon a time there was a tiny model that learned to predict the next word.\n"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def corpus_of(names: list[str]) -> Corpus:
    return Corpus(documents=[f"text of {n}" for n in names], names=names, description="test")


@pytest.fixture(scope="module")
def default_corpus() -> Corpus:
    return load_corpus(None, max_bytes=2_000_000)


# --- loading ---------------------------------------------------------------------------------------


def test_load_one_file(tmp_path):
    corpus = load_corpus(write(tmp_path / "story.txt", TEXT))
    assert corpus.documents == [TEXT] and corpus.names == ["story.txt"] and corpus.skipped == []
    assert "1 file," in corpus.description and corpus.skip_summary() == ""


def test_load_nested_folder_sorted_and_hidden_files_left_out(tmp_path):
    write(tmp_path / "b.txt", "bee")
    write(tmp_path / "a" / "z.md", "zed")
    write(tmp_path / "a" / "deeper" / "c.py", "print('c')")
    write(tmp_path / ".git" / "config", "[core]")
    write(tmp_path / ".hidden.txt", "secret")
    corpus = load_corpus(str(tmp_path))
    assert corpus.names == ["a/deeper/c.py", "a/z.md", "b.txt"]
    assert corpus.documents == ["print('c')", "zed", "bee"]
    assert "3 files" in corpus.description


def test_unusable_files_are_skipped_with_one_summary_line(tmp_path):
    write(tmp_path / "good.txt", TEXT)
    write(tmp_path / "image.bin", bytes(range(256)) * 4)
    write(tmp_path / "latin1.txt", "café".encode("latin-1"))
    write(tmp_path / "empty.txt", "")
    write(tmp_path / "blank.txt", " \n\t\n")
    write(tmp_path / "raw.py", "404: Not Found")
    write(tmp_path / "page.html", "<!DOCTYPE html>\n<html><head><title>Page not found</title></head></html>")
    corpus = load_corpus(tmp_path)
    assert corpus.names == ["good.txt"]
    assert sorted(corpus.skipped) == ["blank.txt", "empty.txt", "image.bin", "latin1.txt", "page.html", "raw.py"]
    summary = corpus.skip_summary()
    assert "\n" not in summary
    assert "skipped 6 file(s)" in summary and "2 not UTF-8" in summary and "2 empty" in summary
    assert "2 error page" in summary and "and 3 more" in summary


def test_html_that_is_not_an_error_page_is_kept(tmp_path):
    write(tmp_path / "index.html", "<!DOCTYPE html>\n<html><body><p>Once upon a time</p></body></html>")
    assert load_corpus(tmp_path).names == ["index.html"]


def test_missing_empty_and_useless_data_say_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder.*pass a text file"):
        load_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no files.*pass a text file"):
        load_corpus(tmp_path / "empty")
    write(tmp_path / "bad" / "x.bin", b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="no usable text.*skipped 1 file.*x.bin"):
        load_corpus(tmp_path / "bad")
    with pytest.raises(ValueError, match="max_bytes"):
        load_corpus(tmp_path / "bad", max_bytes=0)


def test_default_corpus_is_python_source(default_corpus):
    corpus = default_corpus
    assert 1_000_000 < corpus.n_bytes <= 2_000_000
    assert len(corpus.documents) > 50 and len(set(corpus.names)) == len(corpus.names)
    assert all(name.endswith(".py") and not name.startswith("site-packages/") for name in corpus.names)
    assert "standard library" in corpus.description and ".py files" in corpus.description
    assert sum("def " in doc for doc in corpus.documents) > 25
    again = load_corpus(None, max_bytes=2_000_000)  # the subset is deterministic
    assert again.names == corpus.names


def test_max_bytes_cuts_a_single_file(tmp_path):
    corpus = load_corpus(write(tmp_path / "story.txt", TEXT * 100), max_bytes=1000)
    assert corpus.documents == [(TEXT * 100)[:1000]]


def test_synthetic_corpus_is_deterministic_patterns():
    a, b = load_corpus("synthetic"), load_corpus("synthetic")
    assert a.documents == b.documents and len(a.documents) >= 100
    assert "synthetic" in a.description
    assert any(line.startswith("count ") for line in a.documents[0].splitlines())
    for line in a.documents[0].splitlines():
        if "+" in line:
            left, right = line.split(" = ")
            assert sum(int(v) for v in left.split(" + ")) == int(right)


# --- splitting -------------------------------------------------------------------------------------


def test_split_is_deterministic_and_by_document():
    corpus = corpus_of([f"doc{i:03d}.txt" for i in range(200)])
    train, val = split_documents(corpus, 0.1)
    assert (train, val) == split_documents(corpus, 0.1)
    assert sorted(train + val) == sorted(corpus.documents)
    assert 5 <= len(val) <= 40  # about 10% of 200


def test_adding_a_file_keeps_every_other_document_in_its_split():
    names = [f"doc{i:03d}.txt" for i in range(100)]
    train, val = split_documents(corpus_of(names), 0.1)
    for extra in ["aaa.txt", "new/file.py", "zzz.txt"]:
        train2, val2 = split_documents(corpus_of(sorted(names + [extra])), 0.1)
        assert set(train) <= set(train2) and set(val) <= set(val2)


def test_one_document_is_split_by_position():
    corpus = Corpus(documents=["0123456789" * 10], names=["one.txt"], description="one")
    train, val = split_documents(corpus, 0.1)
    assert train == [("0123456789" * 10)[:90]] and val == [("0123456789" * 10)[90:]]


@pytest.mark.parametrize("val_fraction", [0.001, 0.999])
def test_both_splits_are_non_empty_with_two_documents(val_fraction):
    train, val = split_documents(corpus_of(["a.txt", "b.txt"]), val_fraction)
    assert len(train) == 1 and len(val) == 1


def test_bad_val_fraction():
    with pytest.raises(ValueError, match="val_fraction"):
        split_documents(corpus_of(["a.txt", "b.txt"]), 1.0)


# --- tokens and the cache --------------------------------------------------------------------------


def test_encode_documents_puts_eot_between_documents():
    tok = train_tokenizer("char", ["abc"])
    tokens = encode_documents(["ab", "c", "cab"], tok)
    assert tokens.dtype == np.uint16
    assert tokens.tolist() == [0, 1, tok.eot_id, 2, tok.eot_id, 2, 0, 1]
    assert tok.decode(tokens) == f"ab{EOT}c{EOT}cab"
    assert encode_documents([], tok).shape == (0,)
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


def test_cached_tokens_are_reused(tmp_path, monkeypatch):
    tok = train_tokenizer("bpe", [TEXT] * 20, vocab_size=300)
    docs = [TEXT, "second document", TEXT.upper()]
    first = cached_tokens(docs, tok, tmp_path)
    assert isinstance(first, np.memmap) and len(list(tmp_path.glob("tokens-*.npy"))) == 1
    assert np.array_equal(first, encode_documents(docs, tok))

    def fail(*args):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(data_module, "encode_documents", fail)
    assert np.array_equal(cached_tokens(docs, tok, tmp_path), first)
    with pytest.raises(AssertionError, match="cache was not used"):  # other content is another key
        cached_tokens(docs + ["more"], tok, tmp_path)
    assert not list(tmp_path.glob("*.tmp"))


def test_prepare_dataset_caches_tokenizer_and_tokens(tmp_path, monkeypatch):
    folder = tmp_path / "stories"
    for i in range(30):
        # a different title word each: files differing only in a number are near-duplicates (core.data.dedup)
        write(folder / f"story{i:02d}.txt", f"Story {'abcdefghijklmnopqrstuvwxyzABCD'[i] * 3}. " + TEXT * 5)
    cache = tmp_path / "cache"
    data = prepare_dataset(folder, "bpe", vocab_size=300, cache_dir=cache)
    assert data.tokenizer.kind == "bpe" and data.train.dtype == np.uint16
    documents = [int((s == data.tokenizer.eot_id).sum()) + 1 for s in (data.train, data.val)]  # eot between
    assert sum(documents) == 30 and documents[1] >= 1 and len(data.train) > len(data.val) > 0
    assert data.tokenizer.decode(data.val).count(EOT) == documents[1] - 1
    assert "30 files" in data.description and data.skip_summary == ""
    assert len(list(cache.glob("tokenizer-bpe-*.json"))) == 1 and len(list(cache.glob("tokens-*.npy"))) == 2

    def fail(*args, **kwargs):
        raise AssertionError("trained or tokenized again")

    monkeypatch.setattr(data_module, "train_tokenizer", fail)
    monkeypatch.setattr(data_module, "encode_documents", fail)
    again = prepare_dataset(folder, "bpe", vocab_size=300, cache_dir=cache)
    assert np.array_equal(again.train, data.train) and again.tokenizer.to_json() == data.tokenizer.to_json()


def test_prepare_dataset_with_a_given_tokenizer_trains_nothing(tmp_path, monkeypatch):
    tok = train_tokenizer("char", [TEXT])
    monkeypatch.setattr(data_module, "train_tokenizer", lambda *a: pytest.fail("trained a tokenizer"))
    data = prepare_dataset(write(tmp_path / "s.txt", TEXT * 3), tokenizer=tok, cache_dir=None)
    assert data.tokenizer is tok
    assert tok.decode(data.train) + tok.decode(data.val) == TEXT * 3


def test_char_alphabet_covers_characters_seen_only_in_validation(tmp_path):
    # One document, split by position: "é" is only in the validation part.
    data = prepare_dataset(write(tmp_path / "s.txt", "ab" * 50 + "é"), tokenizer_kind="char", cache_dir=tmp_path / "c")
    assert data.tokenizer.decode(data.val).endswith("é")


def test_check_length_names_the_split_and_the_fix():
    check_length(np.zeros(17), 16, "validation")
    with pytest.raises(ValueError, match="validation split has 10 tokens.*block_size=9 or less"):
        check_length(np.zeros(10), 16, "validation")


# --- batches ---------------------------------------------------------------------------------------

TOKENS = np.arange(1000, dtype=np.uint16)  # each token is its position, so windows are easy to check


@given(seed=st.integers(0, 2**32), index=st.integers(0, 10**6), block=st.integers(1, 64), batch=st.integers(1, 8))
def test_get_batch_is_pure_and_y_is_x_shifted(seed, index, block, batch):
    x, y = get_batch(TOKENS, block, batch, seed, index)
    assert x.shape == y.shape == (batch, block) and x.dtype == y.dtype == np.int64
    assert np.array_equal(y, x + 1)  # the next token
    assert np.array_equal(x[:, 1:], x[:, :-1] + 1)  # contiguous windows of the text
    assert x.min() >= 0 and y.max() < len(TOKENS)
    x2, y2 = get_batch(TOKENS, block, batch, seed, index)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_batches_differ_by_index_and_seed():
    x0, _ = get_batch(TOKENS, 8, 16, 1337, 0)
    assert not np.array_equal(x0, get_batch(TOKENS, 8, 16, 1337, 1)[0])
    assert not np.array_equal(x0, get_batch(TOKENS, 8, 16, 1338, 0)[0])


def test_get_batch_errors():
    with pytest.raises(ValueError, match="block_size=7 or less"):
        get_batch(TOKENS[:8], 8, 4, 0, 0)
    with pytest.raises(ValueError, match="batch_size"):
        get_batch(TOKENS, 8, 0, 0, 0)


@pytest.mark.parametrize("grad_accum,start_step", [(1, 0), (3, 5)])
def test_prefetcher_yields_the_same_batches_as_direct_calls(grad_accum, start_step):
    args = (TOKENS, 8, 4, 7)
    with BatchPrefetcher(*args, start_index=start_step * grad_accum, depth=2, grad_accum=grad_accum) as batches:
        for step in range(start_step, start_step + 10):
            x, y = next(batches)
            assert x.shape == (grad_accum, 4, 8)
            for a in range(grad_accum):  # micro-batch a of step s is batch s*A + a
                ex, ey = get_batch(*args, step * grad_accum + a)
                assert np.array_equal(x[a], ex) and np.array_equal(y[a], ey)
    assert not batches._thread.is_alive()
    with pytest.raises(StopIteration):
        next(batches)


def test_prefetcher_closes_while_its_queue_is_full():
    before = threading.active_count()
    batches = BatchPrefetcher(TOKENS, 8, 4, 0, depth=1)
    next(batches)
    batches.close()
    batches.close()  # twice is fine
    assert not batches._thread.is_alive() and threading.active_count() == before


def test_prefetcher_raises_errors_from_its_thread(monkeypatch):
    def broken(*args):
        raise RuntimeError("broken window")

    monkeypatch.setattr(batches_module, "_windows", broken)
    with BatchPrefetcher(TOKENS, 8, 4, 0) as batches, pytest.raises(RuntimeError, match="broken window"):
        next(batches)


def test_eval_batches_are_the_same_every_time():
    first = eval_batches(TOKENS, 8, 4, 3, seed=1)
    second = eval_batches(TOKENS, 8, 4, 3, seed=1)
    assert len(first) == 3
    for (x1, y1), (x2, y2) in zip(first, second):
        assert x1.shape == (4, 8) and np.array_equal(x1, x2) and np.array_equal(y1, y2)
        assert np.array_equal(y1, x1 + 1)


def test_data_modules_import_no_framework():
    code = "import sys, core.data.dataset, core.data.tokenizer; print(sorted({'torch', 'tinygrad'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
