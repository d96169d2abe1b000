"""The project installs like a package: a wheel builds from pyproject.toml, installs into a fresh
virtual environment, and its `nwp` console command runs the same command line.

Nothing is downloaded: the wheel is built without build isolation (setuptools from this venv) and
installed with --no-deps --no-index; the fresh venv sees this venv's packages (numpy, the frameworks,
pip) through a .pth file, as a machine with the dependencies installed would. The build runs in a
copy of the sources, so it leaves no build/ or .egg-info in the checkout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"
SOURCES = ("pyproject.toml", "README.md", "train_next_word_prediction.py", "core", "backends")


def run(*args: str | Path, cwd: Path) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ folder of a fresh venv with the built wheel installed."""
    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    wheels = tmp / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, src, cwd=tmp)
    (wheel,) = wheels.glob("next_word_prediction-*.whl")
    env = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    (site / "shared-venv.pth").write_text(sysconfig.get_path("purelib") + "\n")  # this venv's packages
    run(env / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp)
    return env / "bin"


def test_the_console_command_runs(installed, tmp_path):
    # Run from an empty folder, so only the installed package can answer (not the checkout's files).
    version = run(installed / "nwp", "--version", cwd=tmp_path)
    assert version.startswith("next-word-prediction 0.1.0") and "tinygrad" in version and "torch" in version
    help_text = run(installed / "nwp", "--help", cwd=tmp_path)
    assert "export-hf" in help_text and "codecheck" in help_text
    where = run(installed / "python", "-c", "import core, backends; print(core.__file__)", cwd=tmp_path)
    assert str(installed.parent) in where  # the installed copy, not the checkout


def test_the_wheel_holds_every_core_module(installed, tmp_path):
    walk = "[m.name for m in pkgutil.walk_packages(core.__path__, 'core.')]"
    code = f"import core, json, pkgutil; print(json.dumps({walk}))"
    found = json.loads(run(installed / "python", "-c", code, cwd=tmp_path))
    here = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in CORE.rglob("*.py")]
    assert sorted(found) == sorted(m for m in here if m != "core")
