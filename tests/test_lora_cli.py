"""LoRA from the command line: `train --init-from X --lora-rank R`, its checkpoints (adapters only, the base
named and checked), `--resume`, `merge-lora`, then generate; a Hugging Face folder as the base; the
gradient norm in metrics.jsonl and TensorBoard."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import train_next_word_prediction as cli
from core.data.batches import get_batch
from core.data.dataset import prepare_dataset
from core.data.tokenizer import tokenizer_from_json
from core.model.lora import LoraConfig, init_adapters, trainable_shapes
from core.train.checkpoint import ADAPTERS_FILE, MODEL_FILE, load_checkpoint
from tests import test_finetune
from tests.test_finetune import TINY, metrics, random_hf_folder, train

base_run = test_finetune.base_run  # the same fixture: a short run to adapt
LORA = ["--lora-rank", "4", "--lora-alpha", "8", "--lora-targets", "c_attn,mlp.c_fc"]


def generated(checkpoint: Path, capsys, backend: str = "torch") -> str:
    capsys.readouterr()
    assert cli.main(["generate", "--backend", backend, "--checkpoint", str(checkpoint), "--prompt", "1 2",
                     "--max-new-tokens", "12", "--temperature", "0"]) == 0
    return capsys.readouterr().out.splitlines()[-1]


def test_lora_checkpoints_hold_the_adapters_and_name_the_base(base_run, tmp_path, capsys):
    base = load_checkpoint(base_run, "best")
    base_bytes = (base.path / MODEL_FILE).read_bytes()
    run = tmp_path / "lora"
    code, out = train([*TINY, "--init-from", str(base_run), *LORA, "--steps", "6", "--seed", "3",
                       "--tensorboard", "--out", str(run)], capsys)
    assert code == 0, out
    lora = LoraConfig(rank=4, alpha=8.0, targets=("c_attn", "mlp.c_fc"))
    trainable = sum(math.prod(s) for s in trainable_shapes(base.config, lora).values())
    assert f"LoRA: {trainable:,} trainable parameters" in out
    for name in ("last", "best", "step-000006"):
        folder = run / "checkpoints" / name
        assert not (folder / MODEL_FILE).exists()  # no copy of the base
        stored = load_file(folder / ADAPTERS_FILE)
        assert {k: v.shape for k, v in stored.items()} == trainable_shapes(base.config, lora)
    assert (run / "checkpoints" / "last" / ADAPTERS_FILE).stat().st_size < len(base_bytes) / 3
    assert (base.path / MODEL_FILE).read_bytes() == base_bytes  # the base was not written to
    state = load_file(run / "checkpoints" / "last" / "optimizer.safetensors")
    assert sorted(state) == sorted(["step", *(f"{m}.{n}" for n in trainable_shapes(base.config, lora)
                                              for m in ("exp_avg", "exp_avg_sq"))])
    tuned = load_checkpoint(run)
    assert tuned.meta.lora_base["path"] == str(base.path.resolve()) and tuned.meta.lora == lora.to_dict()
    for key, value in base.params.items():  # frozen: the base comes back unchanged
        assert np.array_equal(tuned.base_params[key], value), key
    assert any(not np.array_equal(tuned.params[k], base.params[k]) for k in base.params)  # the merge moved some

    # The first step's gradient norm (logged before clipping) is that of the fresh adapters on the first batch.
    from backends import get_backend

    data = prepare_dataset("synthetic", tokenizer=tokenizer_from_json(base.tokenizer_json), cache_dir=None)
    x, y = get_batch(data.train, base.config.block_size, 4, 3, 0)
    model = get_backend("torch").build_lora(base.config, base.params, init_adapters(base.config, lora, base.params, 3),
                                            lora)
    norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in model.gradients(x, y).values()))
    logged = metrics(run)
    assert logged[0]["grad_norm"] == pytest.approx(norm, rel=1e-5)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    grad_norms = {e.step: float(make_ndarray(e.tensor_proto)) for e in events.Tensors("train/grad_norm")}
    assert sorted(grad_norms) == list(range(1, 7))
    assert all(grad_norms[r["step"]] == pytest.approx(r["grad_norm"], rel=1e-6) for r in logged)

    # merge-lora: a plain checkpoint computing the same model; generate reads both the same
    capsys.readouterr()
    assert cli.main(["merge-lora", "--checkpoint", str(run), "--step", "last"]) == 0
    merged = load_checkpoint(tmp_path / "lora-merged")
    assert merged.meta.lora is None and merged.adapters is None and (merged.path / MODEL_FILE).exists()
    for key, value in tuned.params.items():
        assert np.array_equal(merged.params[key], value), key
    assert generated(run, capsys) == generated(tmp_path / "lora-merged", capsys)
    assert cli.main(["merge-lora", "--checkpoint", str(run)]) == 2  # never overwrites
    assert "never overwrites" in capsys.readouterr().err


def test_a_lora_run_resumes_as_if_never_stopped(base_run, tmp_path, capsys):
    common = [*TINY, "--init-from", str(base_run), *LORA, "--decay-steps", "8", "--seed", "5"]
    code, out = train([*common, "--steps", "8", "--out", str(tmp_path / "straight")], capsys)
    assert code == 0, out
    code, out = train([*common, "--steps", "4", "--out", str(tmp_path / "stopped")], capsys)
    assert code == 0, out
    code, out = train(["--resume", str(tmp_path / "stopped"), "--extend-steps", "4", "--no-progress"], capsys)
    assert code == 0, out
    straight, resumed = metrics(tmp_path / "straight"), metrics(tmp_path / "stopped")
    assert [r["step"] for r in resumed] == list(range(1, 9))
    for a, b in zip(straight, resumed):  # same device and backend: the same numbers step for step
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6, abs=1e-7), a["step"]
    ends = [load_checkpoint(tmp_path / name).adapters for name in ("straight", "stopped")]
    for key in ends[0]:
        np.testing.assert_allclose(ends[1][key], ends[0][key], rtol=0, atol=1e-6, err_msg=key)


def test_a_changed_or_missing_base_is_a_one_line_error(base_run, tmp_path, capsys):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(base_run, base)
    code, out = train([*TINY, "--init-from", str(base), *LORA, "--steps", "2", "--out", str(tmp_path / "l")], capsys)
    assert code == 0, out
    weights = base / "checkpoints" / "best" / MODEL_FILE
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    assert cli.main(["generate", "--backend", "torch", "--checkpoint", str(tmp_path / "l"), "--prompt", "1"]) == 2
    assert "has changed since these adapters were trained" in capsys.readouterr().err
    shutil.rmtree(base)
    assert cli.main(["merge-lora", "--checkpoint", str(tmp_path / "l")]) == 2
    err = capsys.readouterr().err
    assert "the LoRA base" in err and "is missing" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lora-rank", "0"], "--lora-rank 0 is invalid"),
        (["--lora-rank", "2", "--lora-targets", "q_proj"], "use some of c_attn, c_proj"),
        (["--lora-alpha", "2"], "add --lora-rank"),
    ],
)
def test_bad_lora_flags_are_refused_before_anything_is_written(base_run, extra, message, tmp_path, capsys):
    code, out = train([*TINY, "--init-from", str(base_run), *extra, "--steps", "2", "--out", str(tmp_path / "l")],
                      capsys)
    assert code == 2 and message in out and not (tmp_path / "l").exists()
    code, out = train([*TINY, "--lora-rank", "2", "--steps", "2", "--out", str(tmp_path / "l")], capsys)
    assert code == 2 and "pass --init-from" in out


@pytest.mark.slow
def test_lora_on_an_imported_hugging_face_model_in_tinygrad(tmp_path, capsys):
    """A random GPT2LMHeadModel saved with save_pretrained (no download), imported once, as the base."""
    random_hf_folder(tmp_path)
    capsys.readouterr()  # (transformers' own loading messages)
    tune = ["train", "--backend", "tinygrad", "--data", str(tmp_path / "code.txt"), "--lora-rank", "2",
            "--lora-train-biases", "--steps", "4", "--batch-size", "2", "--eval-every", "4", "--eval-batches", "1",
            "--no-progress", "--lr", "1e-2", "--out", str(tmp_path / "ft")]
    assert cli.main([*tune, "--init-from", str(tmp_path / "hf")]) == 2  # a Hugging Face folder: import it first
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "import-hf --model" in errors[0] and not (tmp_path / "ft").exists()
    assert cli.main(["import-hf", "--model", str(tmp_path / "hf"), "--out", str(tmp_path / "imported")]) == 0
    code = cli.main([*tune, "--init-from", str(tmp_path / "imported")])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    tuned = load_checkpoint(tmp_path / "ft")
    assert tuned.meta.lora_base["path"] == str((tmp_path / "imported").resolve()) and tuned.meta.backend == "tinygrad"
    assert "h.0.attn.c_attn.bias" in tuned.adapters  # trained beside the adapters, as asked
    assert all(r["grad_norm"] > 0 for r in metrics(tmp_path / "ft"))
    assert generated(tmp_path / "ft", capsys, "tinygrad") == generated(tmp_path / "ft", capsys, "torch")
