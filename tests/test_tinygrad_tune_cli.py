"""`train --tune SECONDS`: BEAM-searches the run's kernels within the budget (with a progress bar), keeps them
in tinygrad's disk cache, then trains; refused with torch."""

from __future__ import annotations

import pytest

pytest.importorskip("tinygrad")

import train_next_word_prediction as cli  # noqa: E402
from backends.tinygrad import tune  # noqa: E402

RUN = ["train", "--backend", "tinygrad", "--data", "synthetic", "--tokenizer", "bpe", "--vocab-size", "300",
       "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "2",
       "--steps", "2", "--eval-every", "2", "--eval-batches", "1", "--no-progress"]  # fmt: skip


def test_tune_then_train(tmp_path, monkeypatch, capsys):
    import tinygrad.helpers as helpers
    from tinygrad.helpers import diskcache_get

    monkeypatch.setattr(helpers, "CACHEDB", str(tmp_path / "cache.db"))  # a cold cache of the test's own
    monkeypatch.setattr(helpers, "_db_connection", None)
    monkeypatch.setattr(helpers, "_db_tables", set())
    assert cli.main([*RUN, "--tune", "2", "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    err = captured.out + captured.err
    assert "BEAM" in err  # the progress bar
    searched = int(err.split("tune: searched ")[1].split(" ")[0])
    assert searched >= 1  # the first kernel is always searched; the budget stops the next ones
    kept = [key for key, (ast, renderer) in tune._seen.items() if diskcache_get(tune.TABLE, tune._key(ast, renderer))]
    assert len(kept) >= searched
    assert (tmp_path / "run").is_dir()  # and then it trained


def test_tune_refuses_torch(capsys):
    assert cli.main(["train", "--backend", "torch", *RUN[3:], "--tune", "5"]) == 2
    assert "--tune searches tinygrad's kernels" in capsys.readouterr().err
