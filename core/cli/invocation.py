"""The command a user can copy from our output and run as printed (`resume with:`, `generate with:`).

A bare `python train_next_word_prediction.py ...` fails for a user who has not activated the virtual
environment (`No module named 'safetensors'`), so every printed command starts the way this process
was started: `nwp` when it was the installed console command, else this interpreter and the script
path as the user gave it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

CONSOLE_COMMAND = "nwp"  # [project.scripts] in pyproject.toml


def _interpreter(executable: str, cwd: Path) -> str:
    """The interpreter relative to `cwd` when it lies inside it (`.venv/bin/python`), else absolute.
    Not resolved: a venv's python is a symlink, and the venv is what makes the packages importable."""
    path = Path(os.path.abspath(executable))
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def command_prefix(argv0: str | None = None, executable: str | None = None, cwd: str | Path | None = None) -> str:
    """How to start this program again, as a shell command prefix: `nwp`, or e.g.
    `.venv/bin/python train_next_word_prediction.py`. Defaults: this process's argv[0], interpreter, folder."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    cwd = Path(os.getcwd() if cwd is None else cwd).absolute()
    if Path(argv0).name == CONSOLE_COMMAND:
        on_path = shutil.which(CONSOLE_COMMAND)
        same = on_path is not None and os.path.abspath(on_path) == os.path.abspath(argv0)
        return CONSOLE_COMMAND if same else shlex.quote(argv0)  # a venv's nwp not on PATH: its path
    return f"{shlex.quote(_interpreter(executable, cwd))} {shlex.quote(argv0)}"


def command(*args: object) -> str:
    """A full command line for this program: `command("--resume", "runs/X")`."""
    return " ".join([command_prefix(), *(shlex.quote(str(a)) for a in args)])
