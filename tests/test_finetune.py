"""Fine-tuning (`train --init-from`) and TensorBoard logging (`train --tensorboard`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import train_next_word_prediction as cli
from core.convert.huggingface import export_hf_folder
from core.convert.quantize_checkpoint import quantize_checkpoint
from core.data.batches import get_batch
from core.data.dataset import prepare_dataset
from core.data.tokenizer import tokenizer_from_json
from core.train.checkpoint import load_checkpoint, save_checkpoint
from core.train.init_from import load_initial_weights

# A run small enough for a test: patterned synthetic text, character tokenizer, the demo model.
TINY = ["--data", "synthetic", "--batch-size", "4", "--eval-every", "5", "--eval-batches", "2",
        "--warmup-steps", "2", "--no-progress", "--sample-tokens", "8"]


def train(args: list[str], capsys) -> tuple[int, str]:
    code = cli.main(["train", "--backend", "torch", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A short from-scratch run (demo model, char tokenizer) to fine-tune from."""
    run = tmp_path_factory.mktemp("finetune") / "base"
    assert cli.main(["train", "--backend", "torch", *TINY, "--tokenizer", "char", "--preset", "demo",
                     "--steps", "40", "--out", str(run)]) == 0
    return run


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_fine_tuning_starts_from_the_weights_and_keeps_the_tokenizer(base_run, tmp_path, capsys):
    base = load_checkpoint(base_run, "best")
    code, out = train([*TINY, "--init-from", str(base_run), "--steps", "6", "--seed", "7", "--lr", "1e-4",
                       "--out", str(tmp_path / "ft")], capsys)
    assert code == 0, out
    assert f"fine-tuning from {base_run}" in out
    tuned = load_checkpoint(tmp_path / "ft")
    assert tuned.config == base.config and tuned.tokenizer_json == base.tokenizer_json
    assert tuned.meta.init_from == str(base_run) and tuned.step == 6  # a fresh step counter and schedule
    # The first step's loss is the base model's loss on the new run's first batch: the weights came along.
    from backends import get_backend

    tokenizer = tokenizer_from_json(base.tokenizer_json)
    data = prepare_dataset("synthetic", tokenizer=tokenizer, cache_dir=None)
    x, y = get_batch(data.train, base.config.block_size, 4, 7, 0)
    model = get_backend("torch").build(base.config, base.params)
    assert metrics(tmp_path / "ft")[0]["train_loss"] == pytest.approx(model.loss(x, y), rel=1e-5)
    # ... which a model trained from scratch does not have.
    code, out = train([*TINY, "--tokenizer", "char", "--preset", "demo", "--steps", "1", "--seed", "7",
                       "--out", str(tmp_path / "scratch")], capsys)
    assert code == 0, out
    assert metrics(tmp_path / "scratch")[0]["train_loss"] > metrics(tmp_path / "ft")[0]["train_loss"] + 0.3


def test_block_size_may_shrink_but_not_grow(base_run):
    base = load_checkpoint(base_run, "best")
    init = load_initial_weights(base_run, {"block_size": 16, "dropout": 0.1})
    assert init.config.block_size == 16 and init.config.dropout == 0.1
    assert np.array_equal(init.params["wpe.weight"], base.params["wpe.weight"][:16])  # the first rows, cropped
    with pytest.raises(ValueError, match="longer than the model"):
        load_initial_weights(base_run, {"block_size": base.config.block_size + 1})


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--n-embd", "64"], "contradicts the model"),
        (["--preset", "tiny"], "with --init-from the model is the checkpoint's"),
        (["--tokenizer", "bpe"], "contradicts the model's char tokenizer"),
        (["--objective", "mlm"], "causal (next-token) model"),
        (["--reverse"], "fine-tune it without --reverse"),
        (["--resume", "somewhere"], "pass only one of them"),
    ],
)
def test_contradicting_flags_are_refused_before_anything_is_written(base_run, extra, message, tmp_path, capsys):
    code, out = train([*TINY, "--init-from", str(base_run), *extra, "--steps", "2", "--out", str(tmp_path / "ft")],
                      capsys)
    assert code != 0 and message in out
    assert len(out.strip().splitlines()) <= 2  # "using ..." at most, then the one-line error
    assert not (tmp_path / "ft" / "checkpoints").exists()


def test_what_cannot_be_fine_tuned_is_refused(base_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_initial_weights(tmp_path / "nothing", {})
    save_checkpoint(tmp_path / "int8", quantize_checkpoint(load_checkpoint(base_run, "best")))
    with pytest.raises(ValueError, match="int8 weights"):
        load_initial_weights(tmp_path / "int8", {})
    no_tokenizer = load_checkpoint(base_run, "best")
    no_tokenizer.tokenizer_json = None
    save_checkpoint(tmp_path / "bare", no_tokenizer)
    with pytest.raises(ValueError, match="no tokenizer.json"):
        load_initial_weights(tmp_path / "bare", {})


def random_hf_folder(tmp_path: Path):
    """A random GPT2LMHeadModel saved with save_pretrained in tmp_path/hf (no download), a text in
    tmp_path/code.txt to tune it on; its config."""
    transformers = pytest.importorskip("transformers")
    from core.data.tokenizer import train_tokenizer
    from core.model.config import GPTConfig
    from core.model.params import init_params
    from core.train.checkpoint import Checkpoint
    from core.train.meta import CheckpointMeta

    text = "def add(a, b):\n    return a + b\n" * 50
    (tmp_path / "code.txt").write_text(text)
    tokenizer = train_tokenizer("bpe", [text], vocab_size=280)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)
    export_hf_folder(Checkpoint(config, init_params(config, seed=3), CheckpointMeta(), tokenizer.to_json()),
                     tmp_path / "hf")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf")  # a real Hugging Face folder
    hf.save_pretrained(tmp_path / "hf")
    return config


def test_fine_tune_a_hugging_face_folder(tmp_path, capsys):
    """A random GPT2LMHeadModel saved with save_pretrained (no download) is fine-tuned as it is."""
    config = random_hf_folder(tmp_path)
    code, out = train(["--data", str(tmp_path / "code.txt"), "--init-from", str(tmp_path / "hf"), "--steps", "4",
                       "--batch-size", "2", "--eval-every", "4", "--eval-batches", "1", "--no-progress",
                       "--out", str(tmp_path / "ft")], capsys)
    assert code == 0, out
    tuned = load_checkpoint(tmp_path / "ft")
    assert tuned.config == config and tuned.meta.init_from == str(tmp_path / "hf")


def test_tensorboard_events_hold_the_metrics(base_run, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    run = tmp_path / "tb"
    code, out = train([*TINY, "--tokenizer", "char", "--preset", "demo", "--steps", "10", "--tensorboard",
                       "--out", str(run)], capsys)
    assert code == 0, out
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    logged = {r["step"]: r for r in metrics(run)}
    train_loss = {e.step: float(make_ndarray(e.tensor_proto)) for e in events.Tensors("train/loss")}
    assert sorted(train_loss) == sorted(logged) == list(range(1, 11))
    for step, loss in train_loss.items():
        assert loss == pytest.approx(logged[step]["train_loss"], rel=1e-6)  # float32 in the event file
    val_loss = {e.step: float(make_ndarray(e.tensor_proto)) for e in events.Tensors("val/loss")}
    assert sorted(val_loss) == [5, 10]
    assert val_loss[10] == pytest.approx(logged[10]["val_loss"], rel=1e-6)
    tags = {"train/learning_rate", "train/tokens_per_second", "train/grad_norm", "val/accuracy", "val/perplexity",
            "sample"}
    assert tags <= set(events.Tags()["tensors"])
    samples = [make_ndarray(e.tensor_proto).item().decode() for e in events.Tensors("sample")]
    assert len(samples) == 2 and all(isinstance(s, str) for s in samples)


def test_a_fine_tuning_run_resumes_like_any_run(base_run, tmp_path, capsys):
    run = tmp_path / "ft"
    code, out = train([*TINY, "--init-from", str(base_run), "--steps", "5", "--lr", "1e-4", "--out", str(run)],
                      capsys)
    assert code == 0, out
    code, out = train(["--resume", str(run), "--extend-steps", "3", "--no-progress"], capsys)
    assert code == 0, out
    resumed = load_checkpoint(run)
    assert resumed.step == 8 and resumed.meta.init_from == str(base_run)
    assert [r["step"] for r in metrics(run)] == list(range(1, 9))
