"""Data-parallel training with torchrun: two CPU processes (gloo) equal one process with the same
global batch, only rank 0 writes, and the run resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--backend", "torch", "--data", "synthetic", "--tokenizer", "char", "--preset", "demo", "--batch-size", "4",
        "--eval-every", "5", "--eval-batches", "2", "--warmup-steps", "2", "--no-progress", "--sample-tokens", "4"]


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["train_loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "train_next_word_prediction.py", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    ddp = torchrun(*ARGS, "--steps", "5", "--grad-accum", "1", "--out", str(two))
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    assert "2 data-parallel processes" in ddp.stdout
    assert "4 sequences x 1 accumulation x 2 process(es) = 128 tokens per step" in ddp.stdout
    assert ddp.stdout.count("using torch") == 1  # rank 0 alone speaks
    single = subprocess.run([sys.executable, "train_next_word_prediction.py", *ARGS, "--steps", "5",
                             "--grad-accum", "2", "--out", str(one)], cwd=ROOT, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    # Rank r takes batches 2s + r at step s: the same two micro-batches the single process accumulates.
    # The averages are summed in a different order, so losses agree to float32 round-off.
    reference = losses(one)
    assert sorted(losses(two)) == sorted(reference) == [1, 2, 3, 4, 5]
    for step, loss in losses(two).items():
        assert loss == pytest.approx(reference[step], rel=1e-5), step
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["best", "last", "step-000005"]
    meta = json.loads((two / "checkpoints" / "last" / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["step"] == 5

    resumed = torchrun("--backend", "torch", "--resume", str(two), "--extend-steps", "3")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming at step 5" in resumed.stdout
    assert sorted(losses(two)) == list(range(1, 9))
