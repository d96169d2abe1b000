"""Fault tests, part 2: damaged checkpoint files, kill -9 at random moments, and the corpus's
skipped files and near-duplicates (part 1, tests/test_faults.py: runs, resume and durable writes)."""


from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.train import checkpoint as ckpt
from core.train.checkpoint import load_checkpoint
from tests.fault_helpers import ROOT, TINY, losses, one_error_line, run_main, snapshot, train_in_process  # noqa: F401


# 6. damaged files: one line, exit code 2, nothing touched
def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # one bit flipped, in the middle (in a safetensors file: inside the numbers, past the header)
        i = len(data) // 2 + 3
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :])


@pytest.mark.parametrize("how", ["truncated", "empty", "bit-flipped"])
@pytest.mark.parametrize("name", [ckpt.MODEL_FILE, ckpt.OPTIMIZER_FILE, ckpt.META_FILE, ckpt.TOKENIZER_FILE])
def test_a_damaged_file_is_one_clear_line(run_copy, capsys, name, how):
    damage(run_copy / "checkpoints" / "last" / name, how)
    before = snapshot(run_copy)
    code, _, err = run_main(["--backend", "torch", "--resume", str(run_copy)], capsys)
    assert code == 2
    one_error_line(err, "is corrupt or incomplete")
    assert snapshot(run_copy) == before


# 6. kill -9 at random moments, then resume: the weights of an uninterrupted run, bit for bit
def start(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("a") as out:  # a file, not a pipe: a pipe nobody reads can block the run
        return subprocess.Popen([sys.executable, str(ROOT / "train_next_word_prediction.py"), *args], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def kill_and_resume(tmp_path: Path, kills: int, seed: int, steps: int = 120) -> None:
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert train_in_process(whole, steps) == 0
    rng = random.Random(seed)
    command, killed = [*TINY, "--steps", str(steps), "--out", str(broken)], 0
    while True:
        proc = start(command, tmp_path / "log.txt")
        if killed < kills:
            if (broken / "checkpoints" / "last").exists():
                time.sleep(rng.uniform(0.0, 3.0))  # anywhere: starting up, training, saving
            else:  # a first run killed before its first checkpoint could not be resumed
                while not (broken / "checkpoints" / "last").exists() and proc.poll() is None:
                    time.sleep(0.001)
                time.sleep(rng.uniform(0.0, 0.5))
            if proc.poll() is None:
                proc.kill()  # SIGKILL: no handler runs, files are left as they are at that instant
                killed += 1
        assert proc.wait(timeout=300) in (0, -signal.SIGKILL), (tmp_path / "log.txt").read_text()
        last = load_checkpoint(broken, "last")
        if last.step == steps:
            break
        command = ["--backend", "torch", "--no-progress", "--resume", str(broken)]
    assert killed >= 1
    assert losses(broken) == losses(whole)  # each step once, and every loss as in the uninterrupted run
    for name in ("last", "best"):
        ours, theirs = load_checkpoint(broken, name, optimizer=name == "last"), load_checkpoint(whole, name)
        for key, value in theirs.params.items():
            assert np.array_equal(ours.params[key], value), (name, key)


def test_kill_9_once_then_resume_equals_the_uninterrupted_run(tmp_path):
    kill_and_resume(tmp_path, kills=1, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_many_times_then_resume_equals_the_uninterrupted_run(tmp_path, seed):
    kill_and_resume(tmp_path, kills=5, seed=seed, steps=200)


# 8. the corpus: skipped files are reported; near-duplicate documents are trained on once
def test_training_reports_the_files_it_skipped(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    rng = random.Random(0)
    for i in range(30):  # distinct texts (numbers alone would make them near-duplicates of each other)
        words = " ".join("".join(rng.choice("abcdefghij") for _ in range(5)) for _ in range(120))
        (data / f"{i:02d}.txt").write_text(words + "\n")
    (data / "empty.txt").write_text("")
    (data / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    code, out, err = run_main(["--backend", "torch", "--data", str(data), "--tokenizer", "char", "--preset", "demo",
                               "--steps", "2", "--eval-every", "2", "--eval-batches", "1", "--no-progress",
                               "--sample-tokens", "2", "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert "corpus: skipped 2 file(s) (1 empty, 1 not UTF-8): empty.txt, latin1.txt" in out


def test_near_duplicate_documents_are_left_out(tmp_path):
    from core.data.corpus import load_corpus

    data = tmp_path / "codecs"
    data.mkdir()
    for name, offset in (("cp1", 0), ("cp2", 7), ("cp3", 11)):  # generated tables: same code, other numbers
        table = "\n".join(f"    {hex(i)}: {hex((i + offset) % 256)},  # {name} char {i}" for i in range(128))
        (data / f"{name}.py").write_text(f'"""Codec {name}, generated."""\nNAME = "{name}"\nTABLE = {{\n{table}\n}}\n')
    (data / "other.py").write_text("def f(x):\n    return x + 1\n" * 40)
    corpus = load_corpus(data)
    assert corpus.names == ["cp1.py", "other.py"]
    assert corpus.skip_summary() == "skipped 2 file(s) (2 near-duplicate): cp2.py, cp3.py"


def test_the_builtin_corpus_keeps_few_of_its_generated_codec_tables():
    import sysconfig

    from core.data.corpus import load_corpus

    families = ("encodings/cp", "encodings/iso8859", "encodings/mac_")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    on_disk = [p for p in stdlib.glob("encodings/*.py") if p.relative_to(stdlib).as_posix().startswith(families)]
    kept = [n for n in load_corpus(None).names if n.startswith(families)]
    assert len(on_disk) >= 50 and len(kept) <= len(on_disk) // 8, kept  # one per table layout, not one per codec
