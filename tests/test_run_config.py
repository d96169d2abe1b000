"""Run configuration files (core/train/run_config.py and the CLI's --config): TOML in, flags win,
the effective settings saved as config.toml, and a run repeated from that file gives the same losses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import train_next_word_prediction as cli
from core.model.config import GPTConfig, TrainConfig
from core.train.run_config import read_run_config, write_run_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--backend", "torch", "--data", "synthetic", "--tokenizer", "char", "--preset", "demo", "--steps", "12",
        "--batch-size", "4", "--eval-every", "6", "--eval-batches", "2", "--warmup-steps", "3", "--no-progress",
        "--sample-tokens", "4"]  # fmt: skip

names = st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True)
values = st.one_of(st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=20))


@given(st.dictionaries(names, values, max_size=6), st.dictionaries(names, values, max_size=6))
def test_written_settings_read_back_exactly(tmp_path_factory, first, second):
    second = {k: v for k, v in second.items() if k not in first}  # a name belongs to one table
    path = write_run_config(tmp_path_factory.mktemp("c") / "c.toml", {"a": first, "b": second}, "a header\nline two")
    assert read_run_config(path) == {**first, **second}


def test_dashes_and_tables_are_for_the_reader(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('n-layer = 3\n[train]\nlr = 0.5\n')
    assert read_run_config(path) == {"n_layer": 3, "lr": 0.5}
    path.write_text('lr = 1.0\n[train]\nlr = 0.5\n')
    with pytest.raises(ValueError, match="sets lr twice"):
        read_run_config(path)


def losses(run: Path) -> list[float]:
    return [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_run_repeated_from_its_config_gives_the_same_losses(tmp_path, capsys):
    assert cli.main([*TINY, "--out", str(tmp_path / "a")]) == 0
    saved = tmp_path / "a" / "config.toml"
    assert read_run_config(saved)["steps"] == 12 and read_run_config(saved)["n_embd"] == 32
    assert cli.main(["--config", str(saved), "--out", str(tmp_path / "b")]) == 0
    assert len(losses(tmp_path / "a")) == 12
    assert losses(tmp_path / "b") == losses(tmp_path / "a")
    assert (tmp_path / "b" / "config.toml").read_text().split("\n", 1)[1] == saved.read_text().split("\n", 1)[1]
    # A flag on the command line wins over the file.
    assert cli.main(["--config", str(saved), "--steps", "6", "--out", str(tmp_path / "c")]) == 0
    assert len(losses(tmp_path / "c")) == 6 and read_run_config(tmp_path / "c" / "config.toml")["steps"] == 6
    capsys.readouterr()


@pytest.mark.parametrize(
    "text, message",
    [
        ("stepz = 3\n", "train has no setting stepz: choose from"),
        ('steps = "x"\n', "steps = 'x' is not an integer"),
        ("lr = true\n", "lr = True is not a number"),
        ("reverse = 1\n", "reverse = 1 is not a boolean"),
        ('tokenizer = "words"\n', "is not one of bpe, char"),
        ("steps = \n", "is not valid TOML"),
    ],
)
def test_bad_config_is_one_line(text, message, tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert cli.main(["--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing written


def test_missing_config_file(tmp_path, capsys):
    assert cli.main(["--config", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid_runs(path):
    args = cli.parse_with_config(cli.build_parser(), ["train", "--config", str(path)])
    GPTConfig(**{**cli.given(args, GPTConfig), "vocab_size": 100})  # the tokenizer sets the vocabulary
    train = TrainConfig(**cli.given(args, TrainConfig))
    assert train.steps > 0 and math.isfinite(train.lr)


def test_baby_gpt_is_nanogpts_cpu_recipe():
    values = read_run_config(ROOT / "configs" / "baby-gpt.toml")
    recipe = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, steps=2000, lr=1e-3, min_lr=1e-4,
                  warmup_steps=100, beta2=0.99, dropout=0.0, tokenizer="char", schedule="cosine")
    assert {k: values[k] for k in recipe} == recipe


def test_default_toml_is_the_default_run():
    """configs/default.toml spells out the run that no flags give (RUN_PRESETS and DEFAULT_TRAIN)."""
    from core.train.commands import DEFAULT_PRESET, DEFAULT_TRAIN, RUN_PRESETS

    values = read_run_config(ROOT / "configs" / "default.toml")
    expected = {**RUN_PRESETS[DEFAULT_PRESET], **DEFAULT_TRAIN, "backend": "tinygrad", "tokenizer": "bpe",
                "vocab_size": 8192}  # fmt: skip
    assert values == expected
