"""Checkpoints: exact round trip, atomic replacement, clear errors for missing or damaged ones."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from core.model.config import GPTConfig
from core.model.params import init_params
from core.train import checkpoint as ckpt
from core.train.checkpoint import Checkpoint, list_checkpoints, load_checkpoint, resolve_checkpoint, save_checkpoint
from core.train.meta import CheckpointMeta

ROOT = Path(__file__).resolve().parents[1]
CONFIG = GPTConfig(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=8)


def make(step=3, optimizer=True, config=CONFIG):
    params = init_params(config, seed=step)
    state = {"step": np.array([step], dtype=np.int64)}
    state.update({f"exp_avg.{k}": v * 0.5 for k, v in params.items()})
    state.update({f"exp_avg_sq.{k}": v * v for k, v in params.items()})
    meta = CheckpointMeta(step=step, val_loss=1.0 / step)
    return Checkpoint(config, params, meta, '{"kind": "test"}', state if optimizer else None)


def test_round_trip_is_exact(tmp_path):
    original = make()
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last", original)
    loaded = load_checkpoint(tmp_path / "run", "last", optimizer=True)
    assert loaded.config == original.config and loaded.step == 3
    assert loaded.tokenizer_json == original.tokenizer_json
    for name, value in original.params.items():
        assert np.array_equal(loaded.params[name], value) and loaded.params[name].dtype == np.float32
    for name, value in original.optimizer_state.items():
        assert np.array_equal(loaded.optimizer_state[name], value)
    meta = json.loads((tmp_path / "run/checkpoints/last/meta.json").read_text())
    assert meta["format_version"] == ckpt.FORMAT_VERSION and meta["model_config"]["n_embd"] == 8


def test_untied_head_round_trips(tmp_path):
    config = CONFIG.replace(tie_embeddings=False, bias=False)
    save_checkpoint(tmp_path / "c", make(config=config))
    assert "lm_head.weight" in load_checkpoint(tmp_path / "c").params


def test_resolve_names_and_steps(tmp_path):
    for step in (10, 20):
        save_checkpoint(tmp_path / "checkpoints" / f"step-{step:06d}", make(step, optimizer=False))
    save_checkpoint(tmp_path / "checkpoints" / "best", make(10, optimizer=False))
    assert resolve_checkpoint(tmp_path, 20).name == "step-000020"
    assert resolve_checkpoint(tmp_path, "best").name == "best"
    assert [c["step"] for c in list_checkpoints(tmp_path)] == [10, 10, 20]
    with pytest.raises(FileNotFoundError, match="no checkpoint 'last'.*available are"):
        resolve_checkpoint(tmp_path, "last")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_optimizer_state_required_for_resume(tmp_path):
    save_checkpoint(tmp_path / "c", make(optimizer=False))
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(tmp_path / "c", optimizer=True)


@pytest.mark.parametrize("damage", ["truncate", "garbage_meta", "missing_weights", "wrong_shape"])
def test_damaged_checkpoint_is_one_clear_error(tmp_path, damage):
    folder = save_checkpoint(tmp_path / "c", make())
    if damage == "truncate":
        data = (folder / ckpt.MODEL_FILE).read_bytes()
        (folder / ckpt.MODEL_FILE).write_bytes(data[: len(data) // 2])
    elif damage == "garbage_meta":
        (folder / ckpt.META_FILE).write_text("{not json")
    elif damage == "missing_weights":
        (folder / ckpt.MODEL_FILE).unlink()
    else:
        meta = json.loads((folder / ckpt.META_FILE).read_text())
        meta["model_config"]["n_embd"] = 16
        (folder / ckpt.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="corrupt or incomplete") as err:
        load_checkpoint(folder)
    assert "\n" not in str(err.value)


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "last", make(1))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "last", make(2))
    assert load_checkpoint(tmp_path / "last").step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last"]  # no temporary folder left behind


def test_killed_while_writing_leaves_a_loadable_checkpoint(tmp_path):
    """SIGKILL a process that rewrites `last` in a loop: whatever moment it dies, `last` loads."""
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        from core.train.checkpoint import Checkpoint, save_checkpoint
        from core.train.meta import CheckpointMeta
        from core.model.config import GPTConfig
        from core.model.params import init_params
        config = GPTConfig(vocab_size=4000, block_size=64, n_layer=2, n_head=2, n_embd=128)
        params = init_params(config)
        step = 0
        while True:
            step += 1
            save_checkpoint({str(tmp_path / "last")!r}, Checkpoint(config, params, CheckpointMeta(step=step)))
            print(step, flush=True)
    """)
    for delay in (0.6, 0.83, 1.07):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # blocks until the first checkpoint is complete
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert load_checkpoint(tmp_path / "last").step >= 1


def test_a_checkpoint_folder_named_directly_loads_between_the_two_renames_of_a_save(tmp_path):
    """A save killed after moving the old `last` aside and before renaming the new one in leaves only
    `last.old`: naming `last` itself still loads it, as naming the run folder does."""
    save_checkpoint(tmp_path / "last", make(step=7))
    os.replace(tmp_path / "last", tmp_path / "last.old")
    assert load_checkpoint(tmp_path / "last").step == 7


def test_meta_round_trips_and_ignores_unknown_keys(tmp_path):
    meta = CheckpointMeta(step=4, val_loss=2.5, direction="backward", run_settings={"data": "x"}, versions={"v": "1"})
    save_checkpoint(tmp_path / "c", Checkpoint(CONFIG, init_params(CONFIG), meta))
    assert load_checkpoint(tmp_path / "c").meta == meta
    assert CheckpointMeta.from_json({**meta.to_json(), "written_by_a_newer_version": 1}) == meta
