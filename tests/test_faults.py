"""Reliability: nothing a user does by mistake, and nothing the machine does to a run, loses work.

Each test injects a real fault — `kill -9`, a damaged file, a full disk, a crash between two saves,
a folder that already holds a run, a changed setting on resume — and checks that the run folder is
left as it was (or continues exactly as an uninterrupted run would). The fast part runs in CI; the
kill loop with several kills is marked `slow`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import train_next_word_prediction as cli
from core.train import checkpoint as ckpt
from core.train import loop
from core.train.checkpoint import load_checkpoint
from tests.fault_helpers import ROOT, TINY, losses, one_error_line, run_main, snapshot, train_in_process  # noqa: F401


def interrupted_run(run: Path, capsys, steps: int = 30, after: int = 7) -> int:
    """Train in this process and Ctrl-C it once `after` steps are logged; returns the step it saved."""
    def watch() -> None:
        while not (run / "metrics.jsonl").exists() or (run / "metrics.jsonl").read_text().count("\n") < after:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    code, out, err = run_main([*TINY, "--steps", str(steps), "--out", str(run)], capsys)
    watcher.join()
    assert code == 0, out + err
    stopped = load_checkpoint(run, "last").step
    assert after <= stopped < steps
    return stopped


# 1. --out naming a folder that holds a run
def test_out_refuses_a_folder_that_holds_a_run(run_copy, capsys):
    before = snapshot(run_copy)
    code, _, err = run_main([*TINY, "--steps", "20", "--out", str(run_copy)], capsys)
    assert code == 2
    one_error_line(err, f"{run_copy} already holds a run: --resume {run_copy} to continue it, or choose another --out")
    assert snapshot(run_copy) == before


# 2. --resume given a checkpoint folder
def test_resume_from_the_checkpoint_folder_continues_in_the_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    stopped = interrupted_run(run, capsys)
    code, out, err = run_main(["--backend", "torch", "--no-progress", "--resume", str(run / "checkpoints" / "last")],
                              capsys)
    assert code == 0, err
    assert f"resuming at step {stopped}" in out
    assert not (run / "checkpoints" / "last" / "checkpoints").exists()
    assert [step for step, _ in losses(run)] == list(range(1, 31))  # one metrics file, each step once
    assert load_checkpoint(run, "last").step == 30


# 3. settings that would change the run on resume
@pytest.mark.parametrize("flag, stored, new", [
    (["--data", "README.md"], "'synthetic'", "'README.md'"),
    (["--tokenizer", "bpe"], "'char'", "'bpe'"),
    (["--reverse"], "False", "True"),
    (["--max-data-mb", "1"], "None", "1.0"),
    (["--seed", "1"], "1337", "1"),
    (["--batch-size", "8"], "4", "8"),
    (["--grad-accum", "2"], "1", "2"),
    (["--steps", "40"], "20", "40"),
    (["--lr", "0.01"], "0.001", "0.01"),
])
def test_resume_refuses_a_changed_setting(run_copy, capsys, flag, stored, new):
    before = snapshot(run_copy)
    code, _, err = run_main(["--backend", "torch", "--resume", str(run_copy), *flag], capsys)
    assert code == 2
    name = flag[0][2:].replace("-", "_")
    one_error_line(err, f"{name}={stored}", f"not {new}")
    assert snapshot(run_copy) == before


def test_resume_refuses_another_number_of_processes(run_copy):
    from core.train.resume import check_world_size

    checkpoint = load_checkpoint(run_copy, "last")
    check_world_size(checkpoint, 1)
    with pytest.raises(ValueError, match=r"trained by 1 process\(es\), not 2"):
        check_world_size(checkpoint, 2)


def test_finished_run_is_extended_only_on_request(run_copy, capsys):
    code, _, err = run_main(["--backend", "torch", "--resume", str(run_copy)], capsys)
    assert code == 2
    one_error_line(err, "finished at step 20 of 20", "--extend-steps")
    before = losses(run_copy)
    code, out, err = run_main(["--backend", "torch", "--no-progress", "--resume", str(run_copy),
                               "--extend-steps", "10"], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert losses(run_copy)[:20] == before and [r["step"] for r in records] == list(range(1, 31))
    # The schedule continues as planned: its decay ended at step 20, so the extension runs at min_lr.
    assert all(r["lr"] == pytest.approx(1e-4) for r in records[20:])
    assert load_checkpoint(run_copy, "last").train_config.steps == 30


# 4. a crash between the saves of one evaluation; the early-stopping counter across a resume
class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


def crash_at_save(monkeypatch, number: int) -> None:
    """Make the `number`-th checkpoint save of the run die before it writes anything."""
    calls = {"n": 0}
    real = loop.save_checkpoint

    def save(path, checkpoint):
        calls["n"] += 1
        if calls["n"] == number:
            raise Crash
        return real(path, checkpoint)

    monkeypatch.setattr(loop, "save_checkpoint", save)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("whole") / "run"
    assert train_in_process(run, 15) == 0
    return run


@pytest.mark.parametrize("save_number", [2, 3, 4, 5, 6])  # the saves of the first two evaluations
def test_crash_between_saves_then_resume_decides_as_an_uninterrupted_run(uninterrupted, tmp_path, monkeypatch,
                                                                          save_number):
    run = tmp_path / "run"
    crash_at_save(monkeypatch, save_number)
    with pytest.raises(Crash):
        train_in_process(run, 15)
    monkeypatch.undo()
    last = load_checkpoint(run, "last") if (run / "checkpoints" / "last").exists() else None
    if last is not None and np.isfinite(last.meta.best_val_loss):
        # `last` never records a best loss that `best` does not hold.
        assert load_checkpoint(run, "best").meta.val_loss <= last.meta.best_val_loss
    if last is None:  # died before the first `last`: nothing to resume, start again in a new folder
        return
    assert cli.main(["--backend", "torch", "--no-progress", "--resume", str(run)]) == 0
    for name in ("best", "last"):
        ours, theirs = load_checkpoint(run, name), load_checkpoint(uninterrupted, name)
        assert (ours.step, ours.meta.best_val_loss) == (theirs.step, theirs.meta.best_val_loss), name
        for key, value in theirs.params.items():
            assert np.array_equal(ours.params[key], value), (name, key)


def test_early_stopping_counts_across_a_resume(tmp_path, monkeypatch):
    """With patience 2, a run resumed after an evaluation without gain stops where the whole run stops."""
    extra = ("--patience", "2", "--lr", "0.3", "--min-lr", "0.3", "--eval-every", "2")  # too high: no steady gain
    whole = tmp_path / "whole"
    assert train_in_process(whole, 60, *extra) == 0
    records = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "val_loss" in r]
    assert records[-1]["step"] < 60, "the whole run should stop early (the test needs a run that does)"
    best, no_gain_at = np.inf, None
    for r in evals[:-1]:  # the first evaluation without gain that the run continued after
        if r["val_loss"] >= best and no_gain_at is None:
            no_gain_at = r["step"]
        best = min(best, r["val_loss"])
    assert no_gain_at is not None
    broken = tmp_path / "broken"
    real = loop.learning_rate

    def die_after(step: int, tc) -> float:  # the process dies as the step after that evaluation begins
        if step == no_gain_at:
            raise Crash
        return real(step, tc)

    monkeypatch.setattr(loop, "learning_rate", die_after)
    with pytest.raises(Crash):
        train_in_process(broken, 60, *extra)
    monkeypatch.undo()
    assert load_checkpoint(broken, "last").step == no_gain_at
    assert cli.main(["--backend", "torch", "--no-progress", "--resume", str(broken)]) == 0
    assert losses(broken) == losses(whole)


# 5. durable writes
def test_save_flushes_files_and_folder_before_the_rename(tmp_path, monkeypatch):
    from core.model.config import GPTConfig
    from core.model.params import init_params
    from core.train.meta import CheckpointMeta

    config = GPTConfig(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=8)
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_rmtree = os.fsync, os.replace, shutil.rmtree
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))[1])
    monkeypatch.setattr(shutil, "rmtree", lambda p, **k: (events.append(("rmtree", str(p))), real_rmtree(p, **k))[1])
    target = tmp_path / "checkpoints" / "last"
    for step in (1, 2):  # the second save replaces the first
        events.clear()
        ckpt.save_checkpoint(target, ckpt.Checkpoint(config, init_params(config), CheckpointMeta(step=step), "{}"))
    into_place = events.index(("replace", str(target)))
    synced = {Path(path).name for kind, path in events[:into_place] if kind == "fsync"}
    assert {ckpt.MODEL_FILE, ckpt.TOKENIZER_FILE, ckpt.META_FILE} <= synced  # every file, before the rename
    assert any(kind == "fsync" and ".last.tmp-" in Path(p).name for kind, p in events[:into_place])  # its folder
    parent_synced = events.index(("fsync", str(target.parent)), into_place)
    old_removed = events.index(("rmtree", str(target) + ".old"), into_place)
    assert parent_synced < old_removed  # the previous checkpoint goes only once the new one is on disk
    assert load_checkpoint(target).step == 2


FULL_DISK = """\
import resource, signal, sys
sys.path.insert(0, {root!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
"""


def with_full_disk(limit: int, body: str) -> subprocess.CompletedProcess:
    """Run `body` in a process that cannot write files larger than `limit` bytes (a disk that fills up)."""
    script = FULL_DISK.format(root=str(ROOT), limit=limit) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_metrics_rewritten_on_resume_survive_a_full_disk(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "train_loss": 1.0 / s}) + "\n" for s in range(1, 101)))
    before = path.read_bytes()
    done = with_full_disk(200, f"""
        from pathlib import Path
        from core.train.loop import MetricsLog
        try:
            MetricsLog(Path({str(path)!r}), resume_step=60)
        except OSError as err:
            print("refused:", err)
    """)
    assert done.returncode == 0, done.stderr
    assert "refused" in done.stdout
    assert path.read_bytes() == before  # the old file is whole; nothing was half-rewritten


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(run_copy):
    last = run_copy / "checkpoints" / "last"
    before = snapshot(run_copy)
    done = with_full_disk((last / ckpt.MODEL_FILE).stat().st_size // 2, f"""
        from core.train.checkpoint import load_checkpoint, save_checkpoint
        checkpoint = load_checkpoint({str(run_copy)!r}, "last", optimizer=True)
        try:
            save_checkpoint({str(last)!r}, checkpoint)
        except Exception as err:
            print("refused:", type(err).__name__, err)
    """)
    assert done.returncode == 0, done.stderr
    assert "refused: SaveError could not save checkpoint" in done.stdout and "the previous one is kept" in done.stdout
    assert snapshot(run_copy) == before  # no temporary folder left, `last` untouched
    assert load_checkpoint(run_copy, "last", optimizer=True).step == 20


def test_a_full_disk_during_training_stops_with_one_line_and_resumes(uninterrupted, tmp_path, monkeypatch, capsys):
    """ENOSPC in the middle of the second evaluation's first save: one line, the first `last` kept."""
    run = tmp_path / "run"
    real_write = os.write

    def write(fd: int, data) -> int:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if str(run) in target and (run / "checkpoints" / "last").exists():
            real_write(fd, bytes(data)[: len(data) // 2])  # part of it reaches the disk, then it is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    code, _, err = run_main([*TINY, "--steps", "15", "--out", str(run)], capsys)
    monkeypatch.undo()
    assert code == 2
    one_error_line(err, "could not save checkpoint", "No space left on device", "the previous one is kept")
    assert load_checkpoint(run, "last", optimizer=True).step == 5
    assert not [p for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]
    assert cli.main(["--backend", "torch", "--no-progress", "--resume", str(run)]) == 0  # space freed: continue
    assert losses(run) == losses(uninterrupted)
    for key, value in load_checkpoint(uninterrupted, "last").params.items():
        assert np.array_equal(load_checkpoint(run, "last").params[key], value), key
