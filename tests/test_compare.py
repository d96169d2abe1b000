"""`compare`: several architectures on the same data, tokens and seed, one table and one plot (torch backend,
a tiny synthetic corpus, a few steps)."""

from __future__ import annotations

import json

import pytest

from core.data.dataset import DataSettings
from core.model.config import TrainConfig
from core.train.compare import compare, parse_model, read_models

TRAIN = TrainConfig(steps=6, batch_size=4, eval_every=3, eval_batches=2, warmup_steps=1, lr=3e-3)
BASE = dict(n_layer=1, n_head=2, n_embd=16, block_size=16)
SETTINGS = DataSettings(data="synthetic", tokenizer="char")


@pytest.fixture(scope="module")
def torch_backend():
    from backends import get_backend

    return get_backend("torch")


def test_compare_writes_table_json_and_plot(torch_backend, tmp_path):
    models = {
        "gpt2": {},
        "gpt2-again": {},  # the same model again: same data, tokens and seed must give the same curve
        "llama": dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=1),
    }
    rows = compare(torch_backend, models, TRAIN, SETTINGS, tmp_path, BASE, log=lambda _: None)
    assert [r.name for r in rows] == list(models)
    assert [p["val_loss"] for p in rows[0].curve] == [p["val_loss"] for p in rows[1].curve]
    assert [p["tokens"] for p in rows[0].curve] == [3 * 4 * 16, 6 * 4 * 16]
    assert rows[2].curve[-1]["val_loss"] != rows[0].curve[-1]["val_loss"] and rows[2].params != rows[0].params
    for r in rows:
        assert r.best_val_loss <= r.final_val_loss and r.bits_per_byte > 0 and r.tokens_per_second > 0
    table = (tmp_path / "compare.md").read_text()
    assert "| llama | position=rope, norm=rmsnorm, mlp=swiglu, bias=False, n_kv_head=1 |" in table
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["backend"] == "torch" and [r["name"] for r in saved["rows"]] == list(models)
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_model_fails_before_training(torch_backend, tmp_path):
    with pytest.raises(ValueError, match="model bad: norm='batch' is invalid"):
        compare(torch_backend, {"ok": {}, "bad": {"norm": "batch"}}, TRAIN, SETTINGS, tmp_path, BASE)
    assert not (tmp_path / "ok").exists()  # nothing trained


def test_model_flags_and_toml(tmp_path):
    assert parse_model("llama:position=rope,n_kv_head=1,bias=false") == (
        "llama", {"position": "rope", "n_kv_head": 1, "bias": False}
    )
    assert parse_model("gpt2") == ("gpt2", {})
    with pytest.raises(ValueError, match="not field=value"):
        parse_model("x:position")
    path = tmp_path / "models.toml"
    path.write_text('[gpt2]\n[llama]\nposition = "rope"\nrope_theta = 500.0\n')
    assert read_models(path) == {"gpt2": {}, "llama": {"position": "rope", "rope_theta": 500.0}}
    path.write_text("position = 1\n")
    with pytest.raises(ValueError, match="one \\[name\\] table per model"):
        read_models(path)


def test_cli_compare(tmp_path, capsys):
    import train_next_word_prediction as cli

    args = ["compare", "--backend", "torch", "--data", "synthetic", "--tokenizer", "char", "--out", str(tmp_path),
            "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "16", "--steps", "2",
            "--eval-every", "2", "--eval-batches", "1", "--batch-size", "2",
            "--model", "a", "--model", "b:mlp=swiglu,n_inner=24"]  # fmt: skip
    assert cli.main(args) == 0
    assert "compare.md" in capsys.readouterr().out
    assert cli.main([*args[:-4], "--model", "c:n_kv_head=3"]) == 2
    assert "model c: n_kv_head=3 does not divide n_head=2" in capsys.readouterr().err
