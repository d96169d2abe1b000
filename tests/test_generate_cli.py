"""`generate` and `chat` as a user meets them, on a tiny checkpoint trained once for this module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import train_next_word_prediction as cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "run"
    args = [
        "--backend",
        "torch",
        "--data",
        "synthetic",
        "--tokenizer",
        "char",
        "--preset",
        "demo",
        "--steps",
        "20",
        "--eval-every",
        "10",
        "--eval-batches",
        "2",
        "--batch-size",
        "8",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert cli.main(args) == 0
    return out


def generate(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["generate", "--backend", "torch", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_prompts_and_stats(run, capsys, tmp_path):
    code, out, _ = generate(
        capsys,
        "--checkpoint",
        str(run),
        "--prompt",
        "count 1 2",
        "--max-new-tokens",
        "12",
        "--temperature",
        "0",
        "--stats",
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "using torch on cpu" and lines[1].startswith("count 1 2")
    assert "prob" in out and "entropy" in out
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("1 + 2 =\nab ab\n")
    code, out, _ = generate(capsys, "--checkpoint", str(run), "--prompts-file", str(prompts), "--max-new-tokens", "5")
    assert code == 0 and out.splitlines()[1].startswith("1 + 2 =") and out.splitlines()[2].startswith("ab ab")


def test_same_seed_same_text_and_step_choice(run, capsys):
    args = ["--checkpoint", str(run), "--prompt", "ab", "--max-new-tokens", "16", "--seed", "3"]
    first, second = generate(capsys, *args)[1], generate(capsys, *args)[1]
    assert first == second
    assert generate(capsys, *args, "--step", "10")[0] == 0
    assert generate(capsys, *args, "--step", "last")[0] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint", "no/such/run"], "does not exist"),
        (["--step", "999"], "no checkpoint '999'"),
        (["--prompt", "€€€"], "never seen"),
        (["--temperature", "-1"], "temperature"),
        (["--top-p", "1.5"], "top_p"),
    ],
)
def test_bad_generation_input_is_one_line(run, capsys, args, message):
    full = ["--checkpoint", str(run), *args] if args[0] != "--checkpoint" else args
    code, _, err = generate(capsys, *full)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_empty_and_too_long_prompts(run, capsys):
    code, out, _ = generate(capsys, "--checkpoint", str(run), "--prompt", "", "--max-new-tokens", "4")
    assert code == 0
    code, out, _ = generate(capsys, "--checkpoint", str(run), "--prompt", "ab " * 20, "--max-new-tokens", "4")
    assert code == 0 and "keeping its last 15" in out  # demo block_size is 16


def test_incomplete_checkpoint_folder(run, capsys, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text("{}")
    code, _, err = generate(capsys, "--checkpoint", str(broken))
    assert code == 2 and "corrupt or incomplete" in err


def test_chat_through_piped_stdin(run):
    script = "help\nparams\nset temperature=0 max_new_tokens=6\ncheckpoints\nload 10\ncount 4 5\nset top_p=7\nquit\n"
    result = subprocess.run(
        [sys.executable, "train_next_word_prediction.py", "chat", "--backend", "torch", "--checkpoint", str(run)],
        cwd=ROOT,
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "commands:" in out  # help
    assert "temperature=0.0" in out and "max_new_tokens=6" in out  # set, then shown
    assert "step-000010" in out and "step      20" in out  # the checkpoint list
    assert "loaded step-000010 (step 10)" in out
    assert "count 4 5" in out
    assert "error: top_p=7.0" in out  # a bad setting is one line, and the chat goes on
