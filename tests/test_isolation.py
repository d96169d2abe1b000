"""Only the chosen framework is ever imported: a tinygrad run never loads torch, a torch run never
loads tinygrad, and the core loads neither. Each check runs in a fresh interpreter, since this
test process has both frameworks loaded already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE_MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in (ROOT / "core").rglob("*.py")
)

# Imports every core module (one at a time, recording what each brings in) and the backend registry,
# then optionally builds and runs a model on one backend; prints the frameworks found as JSON.
SCRIPT = """
import importlib, json, sys
FRAMEWORKS = ("torch", "tinygrad")
def loaded():
    return sorted(f for f in FRAMEWORKS if any(m == f or m.startswith(f + ".") for m in sys.modules))
report = {{}}
for name in ["core"] + {modules!r} + ["backends"]:
    importlib.import_module(name)
    report[name] = loaded()
backend = {backend!r}
if backend:
    import numpy as np
    from backends import get_backend
    from core.model.config import GPTConfig, TrainConfig
    from core.model.params import init_params
    config = GPTConfig(vocab_size=11, block_size=4, n_layer=1, n_head=1, n_embd=8)
    model = get_backend(backend).build(config, init_params(config), TrainConfig())
    tokens = np.arange(8).reshape(2, 4) % 11
    model.logits(tokens)
    model.loss(tokens, tokens)
    if backend == "torch":  # a tinygrad training step would cost ~15 s of compiling here
        model.train_step(tokens[None], tokens[None], 1e-3)
    report["run"] = loaded()
print("REPORT" + json.dumps(report))
"""


def run_isolated(backend: str | None) -> dict[str, list[str]]:
    code = SCRIPT.format(modules=CORE_MODULES, backend=backend)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT"))
    return json.loads(line[len("REPORT") :])


def test_core_modules_are_found():
    expected = {"core.model.config", "core.model.params", "core.model.reference", "core.model.interface"}
    assert expected <= set(CORE_MODULES)


def test_core_imports_no_framework():
    report = run_isolated(None)
    offenders = {module: frameworks for module, frameworks in report.items() if frameworks}
    assert not offenders, f"modules that pulled in a framework (first one is the culprit): {offenders}"


@pytest.mark.parametrize(("backend", "other"), [("tinygrad", "torch"), ("torch", "tinygrad")])
def test_a_run_imports_only_its_own_framework(backend, other):
    report = run_isolated(backend)
    assert report["run"] == [backend], f"a {backend} run loaded {report['run']}, not {other}-free"
