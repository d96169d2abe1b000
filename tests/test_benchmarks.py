"""The benchmark suite runs on a tiny configuration and writes its JSON, markdown and chart.

No speed is measured or checked here: the figures live in benchmarks/results/ and come from
`python -m benchmarks`. These tests only keep the suite's code working (seconds, not minutes).
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks import report
from benchmarks.run import main

TINY = [
    "--quick", "--config", "demo", "--vocab-size", "64", "--batch-size", "2", "--repeats", "1",
    "--decode-batches", "1", "2", "--prompt-len", "2", "--new-tokens", "5", "--matmul-size", "64",
]  # fmt: skip
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_suite_runs_every_section_and_writes_three_files(tmp_path):
    assert main([*TINY, "--backend", "torch", "--out", str(tmp_path), "--name", "tiny"]) == 0
    result = json.loads((tmp_path / "tiny.json").read_text())
    assert {"config", "machine", "versions", "run", "matmul_gflops", "attention", "decode", "training"} <= set(result)
    assert result["config"]["n_layer"] == 2 and result["run"]["mode"] == "quick"
    assert {r["path"] for r in result["attention"]} == {"fused", "naive"}
    decode = result["decode"]["results"]
    assert {(r["batch"], r["cache"]) for r in decode if r["backend"] == "torch"} == {(1, True), (1, False), (2, True)}
    assert all(r["tokens_per_s"] > 0 and r["first_token_ms"] > 0 for r in decode)
    assert [p["batch"] for p in result["decode"]["positions"]] == [1, 2]
    assert result["decode"]["floor"]["least_ms_per_step"] > 0 and "Floor:" in (tmp_path / "tiny.md").read_text()
    training = {r["backend"]: r for r in result["training"]}
    mfu = training["torch"]["mfu"]  # None where the step outran this tiny run's measured matmul peak
    assert training["torch"]["ms_per_step"] > 0 and (mfu is None or 0 < mfu <= 1)
    if importlib.util.find_spec("transformers") is not None:  # the peer is part of every figure
        assert "hf" in training and {r["backend"] for r in decode} == {"torch", "hf"}
        assert "training: torch / hf" in result["ratios"]
        assert [a["rows_equal_to_hf"] for a in result["decode"]["agreement"]] == ["1/1", "2/2"]  # same weights
    markdown = (tmp_path / "tiny.md").read_text()
    assert markdown.startswith("# Benchmarks") and "## Training" in markdown and "## Targets" in markdown
    assert (tmp_path / "tiny.png").read_bytes()[:8] == PNG


def test_tinygrad_attention_paths_run(tmp_path):
    pytest.importorskip("tinygrad")
    args = [*TINY, "--backend", "tinygrad", "--only", "attention", "--attention-shape", "1", "2", "4", "4"]
    assert main([*args, "--no-peer", "--out", str(tmp_path), "--name", "attention"]) == 0
    rows = json.loads((tmp_path / "attention.json").read_text())["attention"]
    assert {(r["path"], r["direction"]) for r in rows} == {
        (path, direction) for path in ("fused", "naive", "ours") for direction in ("forward", "forward+backward")
    }
    assert all(r["calls_per_s"] > 0 for r in rows)
    assert (tmp_path / "attention.png").read_bytes()[:8] == PNG


def test_targets_read_ratios_of_the_same_run():
    result = {
        "config": {"n_head": 4, "block_size": 256, "n_embd": 256},
        "training": [{"backend": "torch", "tokens_per_s": 300.0}, {"backend": "hf", "tokens_per_s": 200.0}],
        "decode": {"results": [{"backend": "torch", "batch": 1, "cache": True, "tokens_per_s": 600.0},
                               {"backend": "hf", "batch": 1, "cache": True, "tokens_per_s": 100.0}]},
    }  # fmt: skip
    checks = {c["target"]: c for c in report.targets(result)}
    assert checks["torch training / Hugging Face"]["measured"] == 1.5 and checks["torch training / Hugging Face"]["met"]
    assert checks["torch training / Hugging Face"]["basis"] == "same run"
    assert checks["torch decode batch 1 / Hugging Face generate"]["measured"] == 6.0


def test_targets_without_a_measured_peer_are_not_judged():
    """tinygrad's own examples not timed in this run: their targets say so, whatever our figures are (a
    figure typed into the code, compared with this run's, would give them a measured ratio)."""
    decode = [{"backend": "tinygrad", "batch": b, "cache": True, "tokens_per_s": 9e9} for b in (1, 8)]
    result = {
        "config": {"n_head": 4, "block_size": 256, "n_embd": 256},
        "training": [{"backend": "tinygrad", "tokens_per_s": 9e9}],
        "decode": {"results": decode},
    }
    checks = {c["target"]: c for c in report.targets(result)}
    against_examples = [c for name, c in checks.items() if "examples/" in name]
    assert len(against_examples) == 3
    assert all(c["measured"] is None and c["met"] is None for c in against_examples)
    assert all(c["basis"] == "not measured in this run" for c in against_examples)
    assert checks["torch training / Hugging Face"]["basis"] == "not measured in this run"  # no torch/hf rows either
    targets_only = {"targets": report.targets(result), "config": {**result["config"], "name": "x", "vocab_size": 8,
                    "n_layer": 1, "batch_size": 1}, "machine": {"cpu": "x", "cpus": 2, "commit": None}, "versions": {},
                    "run": {"mode": "quick", "command": "c", "date": "d", "duration_s": 1.0, "devices": {},
                            "threads": 1, "load_average": {"start": 0, "end": 0, "max": 0}}}  # fmt: skip
    row = next(line for line in report.markdown(targets_only).splitlines() if "examples/gpt2.py" in line)
    assert "| – |" in row and "not measured in this run" in row


def test_mfu_never_exceeds_the_measured_peak():
    """A training step faster than the measured matmul peak reports no MFU (not one above 100%)."""
    pytest.importorskip("torch")
    from backends import get_backend
    from benchmarks import training
    from core.model.config import GPTConfig
    from core.model.params import init_params

    config = GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16)
    model = get_backend("torch").build(config, init_params(config))
    rows = training.run({"torch": model}, None, config, 2, 2, 1e-9, {"torch": "cpu"}, lambda text: None)
    assert rows[0]["tokens_per_s"] > 0 and rows[0]["mfu"] is None  # it beat a peak of 1e-9 GFLOP/s
    assert "measured matmul peak" in rows[0]["mfu_note"]
    assert training.mfu(5.0, 10.0) == 0.5 and training.mfu(10.0, 10.0) == 1 and training.mfu(11.0, 10.0) is None


def test_nanogpt_rounds_are_judged_against_nanogpts_run_of_the_same_round():
    from benchmarks.nanogpt import markdown

    def ran(wall_s: float, val_loss: float = 1.5) -> dict:
        return {"wall_s": wall_s, "returncode": 0, "val_loss": val_loss, "kernels_from_earlier_run": 0}

    result = {
        "runs": {"nanogpt": [ran(100.0), ran(120.0)], "tinygrad": [ran(150.0, 1.49), ran(150.0, 1.49)]},
        "run": {"command": "python -m benchmarks.nanogpt --rounds 2", "date": "today", "load_average": {}},
        "machine": {"cpu": "cpu", "cpus": 2, "commit": "abc"},
        "nanogpt_commit": "def",
        "text_chars": 1000,
    }
    rows = {line.split(" | ")[0]: line for line in markdown(result).splitlines() if line.startswith("| ")}
    # medians 110 and 150 s; ratios 1.5 and 1.25 in the two rounds: their median, not 150 / 110
    assert rows["| nanogpt"] == "| nanogpt | 110.0 | 1.00x (1.00-1.00) | 1.5 | +0.0000 |  |"
    assert rows["| tinygrad"] == "| tinygrad | 150.0 | 1.38x (1.25-1.50) | 1.49 | -0.0100 | 0 |"
