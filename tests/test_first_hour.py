"""The first hour of a new user (issue 18), one test or more per thing that tripped them:

1. printed commands run as printed (`resume with:`, config.toml's "Repeat it with:"), from another folder;
2. `setup.sh` installs the project, so the README's Python snippet runs from any folder;
3. a failed start leaves no run folder behind;
4. `analyze` colours only a terminal, and names the JSON only when one is written;
5. the token plot draws every token; bidirectional labels do not overprint (see also test_plots_*);
6. checkpoints and export-hf folders have the umask's modes;
7. the default outputs are in .gitignore;
8. `--help` lists each command on one line with examples; training prints its plan first.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest

import train_next_word_prediction as cli
from core.cli.invocation import command_prefix
from core.evaluate.commands import use_colour

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "train_next_word_prediction.py"
TINY = ["--backend", "torch", "--data", "synthetic", "--tokenizer", "char", "--preset", "demo", "--batch-size", "4",
        "--eval-every", "2", "--eval-batches", "1", "--warmup-steps", "1", "--no-progress", "--sample-tokens", "4"]


def run(args: list[str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COLUMNS")}
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    if ok:
        assert result.returncode == 0, f"{args} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, str]:
    """A 4-step run started as a user would from another folder: (that folder, its output)."""
    cwd = tmp_path_factory.mktemp("user")
    out = run([sys.executable, str(SCRIPT), *TINY, "--steps", "4", "--out", "run"], cwd).stdout
    return cwd, out


# ---- 1. commands as printed


def test_command_prefix_is_the_interpreter_and_script_as_started(tmp_path, monkeypatch):
    python = tmp_path / ".venv" / "bin" / "python"
    assert command_prefix("train_next_word_prediction.py", str(python), tmp_path) == (
        ".venv/bin/python train_next_word_prediction.py")
    assert command_prefix("../x/train_next_word_prediction.py", "/usr/bin/python3", tmp_path) == (
        "/usr/bin/python3 ../x/train_next_word_prediction.py")
    nwp = tmp_path / "bin" / "nwp"
    nwp.parent.mkdir()
    nwp.write_text("#!/bin/sh\n")
    nwp.chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert command_prefix(str(nwp), str(python), tmp_path) == str(nwp)  # not on PATH: its path
    monkeypatch.setenv("PATH", str(nwp.parent))
    assert command_prefix(str(nwp), str(python), tmp_path) == "nwp"


def test_printed_commands_run_as_printed_from_another_folder(tiny_run):
    cwd, _ = tiny_run
    meta = json.loads((cwd / "run" / "checkpoints" / "last" / "meta.json").read_text())
    resume = meta["resume_command"]  # what `resume with:` prints after Ctrl-C
    assert resume.startswith(shlex.quote(sys.executable)) and "--resume run" in resume
    out = run([*shlex.split(resume), "--extend-steps", "2", "--no-progress"], cwd).stdout
    assert "finished after 6 steps" in out
    header = (cwd / "run" / "config.toml").read_text().splitlines()[0]
    repeat = header.split("Repeat it with: ", 1)[1].replace("NEW", "again")
    run([*shlex.split(repeat), "--steps", "2"], cwd)
    assert (cwd / "again" / "checkpoints" / "last" / "meta.json").exists()


# ---- 2. setup.sh installs the project: the README's Python snippet runs from any folder


def readme_snippet(containing: str) -> str:
    blocks = (ROOT / "README.md").read_text().split("```python\n")[1:]
    return next(b.split("```")[0] for b in blocks if containing in b)


@pytest.mark.slow
def test_setup_installs_the_project_so_snippets_run_anywhere(tmp_path):
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).stdout.split()
    clone = tmp_path / "clone"
    for name in files:  # the checkout's files as a fresh clone would have them (uncommitted edits included)
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    env = clone / ".venv"  # a venv that borrows this one's packages, as after setup.sh's pip step
    venv.EnvBuilder(with_pip=False).create(env)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    (site / "shared-venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    digest = run(["sha256sum", "requirements.txt"], clone).stdout.split()[0]
    (env / ".requirements.sha256").write_text(digest + "\n")
    run(["bash", "setup.sh"], clone)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    snippet = readme_snippet("from backends import get_backend")
    found = run([str(env / "bin" / "python"), "-c", snippet + "\nimport core; print(core.__file__)"], elsewhere)
    assert found.stdout.strip() == str(clone / "core" / "__init__.py")  # the clone, installed editable
    assert "COMMAND" in run([str(env / "bin" / "nwp"), "--help"], elsewhere).stdout
    again = run(["bash", "setup.sh"], clone)  # a second run has nothing left to do
    assert again.stdout == ""


# ---- 3. a failed start leaves nothing behind


@pytest.mark.parametrize("case", ["missing", "empty", "binary", "shape", "too short"])
def test_a_failed_start_creates_no_run_folder(case, tmp_path, capsys):
    data = tmp_path / "data.txt"
    args = {"missing": ["--data", str(tmp_path / "no.txt")], "shape": ["--n-embd", "30"],
            "too short": ["--data", str(data), "--block-size", "64"]}.get(case, ["--data", str(data)])
    if case == "binary":
        data.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif case == "too short":  # fewer tokens than one context
        data.write_text("tiny text\n")
    elif case == "empty":
        data.write_text("")
    code = cli.main([*TINY, *args, "--out", str(tmp_path / "new" / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert not (tmp_path / "new").exists()


# ---- 4. colour only on a terminal


def test_colour_follows_the_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    leader, follower = os.openpty()  # a real terminal device, and a plain file
    with os.fdopen(follower, "w") as tty, open(os.devnull, "w") as file:
        assert use_colour("auto", tty) and not use_colour("auto", file)
        assert use_colour("always", file) and not use_colour("never", tty)
        monkeypatch.setenv("NO_COLOR", "1")
        assert not use_colour("auto", tty)
    os.close(leader)
    with pytest.raises(ValueError, match="auto, always, never"):
        use_colour("sometimes")


def test_analyze_into_a_file_has_no_colour_codes(tiny_run):
    cwd, _ = tiny_run
    args = [sys.executable, str(SCRIPT), "analyze", "--backend", "torch", "--checkpoint", "run", "--rows", "3",
            "--text", "12 34 56 78 90 12 34"]
    plain = run(args, cwd).stdout
    assert "\033[" not in plain and "[" in plain  # improbable tokens bracketed instead
    assert "more tokens (--rows N shows more; --json FILE writes all)" in plain and "in the JSON" not in plain
    coloured = run([*args, "--color", "always", "--json", "all.json"], cwd).stdout
    assert "\033[" in coloured and "more tokens (all of them are in all.json)" in coloured


# ---- 6. modes


def test_checkpoints_and_exports_have_the_umask_modes(tmp_path, capsys):
    from core.model.config import preset
    from core.model.params import init_params
    from core.train.checkpoint import Checkpoint, save_checkpoint
    from core.train.meta import CheckpointMeta

    old = os.umask(0o022)
    try:
        config = preset("demo", vocab_size=64)
        saved = save_checkpoint(tmp_path / "ckpt", Checkpoint(config, init_params(config, seed=0), CheckpointMeta()))
        assert cli.main(["export-hf", "--checkpoint", str(saved), "--out", str(tmp_path / "hf")]) == 0
    finally:
        os.umask(old)
    for folder in (saved, tmp_path / "hf"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
        assert "model.safetensors" in modes and set(modes.values()) == {0o644}, modes


# ---- 7. .gitignore


def test_default_outputs_are_ignored_by_git():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    defaults = [a.default + ("/report.json" if a.dest == "out" else "")  # --out is a folder: a file in it
                for name in ("evaluate", "attention", "bidirectional") for a in commands[name]._actions
                if a.dest in ("out", "plot")]
    paths = [*defaults, "runs/torch-20260101-000000", "hf/X", ".cache/data/x.npy"]
    assert len(defaults) == 3 and all(isinstance(d, str) for d in defaults)
    for path in paths:
        assert run(["git", "check-ignore", "-q", "--no-index", path], ROOT, ok=False).returncode == 0, path


# ---- 8. discoverability


def test_help_lists_each_command_on_one_line_with_examples(tmp_path):
    out = run([sys.executable, str(SCRIPT), "--help"], tmp_path).stdout
    commands = next(a for a in cli.build_parser()._actions if a.dest == "command")
    for choice in commands._choices_actions:  # each command with its whole help on its line
        assert any(line.split() and line.split()[0] == choice.dest and choice.help in line
                   for line in out.splitlines()), choice.dest
    examples = out.split("examples:\n", 1)[1]
    assert f"{shlex.quote(sys.executable)} {SCRIPT} --backend torch" in examples


def test_training_prints_its_plan_before_the_data_step(tiny_run):
    _, out = tiny_run
    plan = next(line for line in out.splitlines() if line.startswith("about to train"))
    assert out.index(plan) < out.index("corpus:")
    assert "4 steps of 64 tokens" in plan and "synthetic" in plan and "run folder run" in plan


# ---- 5. pictures that do not cut silently (looked at too: the README's analyze and bidirectional figures)


def test_the_token_plot_draws_every_token_in_rows(tmp_path):
    import matplotlib.image

    from core.plots.analysis import plot_token_probabilities, token_rows

    rows = token_rows(316)
    assert [len(r) for r in rows] == [80, 80, 80, 76] and rows[-1].stop == 316  # every token, in order
    assert token_rows(2000)[-1].stop == 960  # past 12 rows the plot is cut (and its title says so)
    probs = np.random.default_rng(0).uniform(1e-5, 1, 316)
    tokens = [f"t{i}" for i in range(316)]
    one = matplotlib.image.imread(plot_token_probabilities(tokens[:80], probs[:80], tmp_path / "one.png"))
    four = matplotlib.image.imread(plot_token_probabilities(tokens, probs, tmp_path / "four.png"))
    assert four.shape[1] == one.shape[1] and four.shape[0] > 3 * one.shape[0] * 0.8  # four rows, one width


def test_scatter_labels_do_not_overprint(tmp_path):
    import matplotlib.pyplot as plt

    from core.plots.analysis import place_labels, plot_bidirectional

    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    xy = np.random.default_rng(1).normal(-2, 0.05, (10, 2))  # a tight cluster: labels would pile up
    ax.scatter(xy[:, 0], xy[:, 1])
    ax.set_xlim(-4, 0)
    ax.set_ylim(-4, 0)
    notes = place_labels(ax, [tuple(p) for p in xy], [f"word{i}" for i in range(10)])
    renderer = fig.canvas.get_renderer()
    boxes = [n.get_window_extent(renderer) for n in notes]
    assert 1 <= len(notes) < 10 and notes[0].get_text() == "word0"  # the first (most surprising) kept
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    plt.close(fig)
    rows = [{"index": i, "word": f"w{i}", "tokens": 1, "forward_logprob": -float(a), "backward_logprob": -float(b),
             "position": i} for i, (a, b) in enumerate(np.random.default_rng(2).uniform(0.1, 8, (60, 2)))]
    assert plot_bidirectional(rows, tmp_path / "bi.png").stat().st_size > 10_000
