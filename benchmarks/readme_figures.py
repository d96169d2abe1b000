"""Every figure and picture of the README's evaluation section, made by the commands the README shows.

    python -m benchmarks.readme_figures             # trains the two runs if missing (a few minutes), then measures
    python -m benchmarks.readme_figures --steps 300 # the training length (default: the CLI's default run)

Trains (or reuses) a forward run and its backward twin with the command line's defaults on the
built-in corpus (`--backend torch`), then runs `evaluate`, `analyze`, `lambada`, `bidirectional`,
`attention` and `codecheck` as the README prints them, and `evaluate` in both backends on 20,000
tokens. The README's pictures (docs/images/, but for the serving page) are these commands' plots.
The Training section's figures come from `python -m benchmarks.default_run`: its results file is
quoted here, with its date and commit, so that one page lists every figure the README gives.
Writes docs/readme_figures.json (every command, its output summary) and docs/readme_figures.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "train_next_word_prediction.py"]
ARGPARSE = Path(sysconfig.get_paths()["stdlib"]) / "argparse.py"
IMAGES = Path("docs/images")
DEFAULT_RUN = Path("benchmarks/results/default-run.json")
SNIPPET = '''def read_lines(path):
    """Return the lines of a file."""
    with open(path) as f:
        return f.read().splitlines()
'''  # the README's snippet.py for `analyze`
PROMPT = '''for name in names:
    if name.startswith("_"):
        continue'''  # the README's `attention` prompt


def run(args: list[str], log: list[dict]) -> str:
    """Run one command from the repository root; record it (as the README writes it) and its time."""
    start = time.perf_counter()
    done = subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(args)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    log.append({"command": "python train_next_word_prediction.py " + shlex.join(args),
                "seconds": round(time.perf_counter() - start, 1)})
    return done.stdout


def trained(run_dir: str, steps: int | None, reverse: bool, log: list[dict]) -> dict:
    """The run (trained now unless it exists) and its last evaluation from metrics.jsonl."""
    extra = (["--steps", str(steps)] if steps else []) + (["--reverse"] if reverse else [])
    command = ["--backend", "torch", "--out", run_dir, "--no-progress", *extra]
    if not (ROOT / run_dir / "checkpoints").is_dir():
        run(command, log)
    records = [json.loads(line) for line in (ROOT / run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "val_loss" in r][-1]
    return {"run": run_dir, "trained_by": "python train_next_word_prediction.py " + " ".join(command),
            "steps": records[-1]["step"], "val_loss": last["val_loss"],
            "val_perplexity": last["val_perplexity"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the CLI's default run)")
    parser.add_argument("--fwd", default="runs/readme-fwd", help="forward run folder")
    parser.add_argument("--bwd", default="runs/readme-bwd", help="backward run folder")
    parser.add_argument("--out", default="docs/readme_figures", help="path of the .json and .md, without suffix")
    args = parser.parse_args(argv)
    log: list[dict] = []
    training_section = default_run_figures()  # first: a missing results file stops the run before any work
    figures: dict = {"default_run": training_section, "forward": trained(args.fwd, args.steps, False, log),
                     "backward": trained(args.bwd, args.steps, True, log)}
    out_dir = Path("runs/readme-figures")  # each command's own output, out of git like every run folder
    (ROOT / out_dir).mkdir(parents=True, exist_ok=True)
    run(["evaluate", "--backend", "torch", "--checkpoint", args.fwd, "--unit", "paragraph",
         "--max-tokens", "100000", "--out", str(out_dir / "eval"), "--no-progress"], log)
    report = json.loads((ROOT / out_dir / "eval" / "report.json").read_text())
    figures["evaluate"] = {k: v for k, v in report.items() if not isinstance(v, list)}
    shutil.copyfile(ROOT / out_dir / "eval" / "perplexity_histogram.png", ROOT / IMAGES / "perplexity_histogram.png")
    shutil.copyfile(ROOT / out_dir / "eval" / "token_probabilities.png",
                    ROOT / IMAGES / "token_probability_distribution.png")  # fmt: skip
    (ROOT / out_dir / "snippet.py").write_text(SNIPPET)
    run(["analyze", "--backend", "torch", "--checkpoint", args.fwd, "--file", str(out_dir / "snippet.py"),
         "--plot", str(IMAGES / "token_probabilities.png"), "--color", "never"], log)  # fmt: skip
    for backend in ("torch", "tinygrad"):
        run(["evaluate", "--backend", backend, "--checkpoint", args.fwd, "--max-tokens", "20000",
             "--out", str(out_dir / backend), "--no-progress"], log)
        small = json.loads((ROOT / out_dir / backend / "report.json").read_text())
        figures[f"evaluate_20000_{backend}"] = {k: v for k, v in small.items() if not isinstance(v, list)}
    tasks = (("lambada_forward", args.fwd, []), ("lambada_backward", args.bwd, ["--reverse"]))
    for name, checkpoint, extra in tasks:
        run(["lambada", "--backend", "torch", "--checkpoint", checkpoint, "--from-text", str(ARGPARSE),
             "--words", "20", *extra, "--json", str(out_dir / f"{name}.json"), "--no-progress"], log)
        figures[name] = json.loads((ROOT / out_dir / f"{name}.json").read_text())["summary"]
    doc = out_dir / "argparse_doc.txt"
    lines_4_to_40 = ARGPARSE.read_text().splitlines(keepends=True)[3:40]  # as the README's `sed -n 4,40p`
    (ROOT / doc).write_text("".join(lines_4_to_40))
    run(["bidirectional", "--backend", "torch", "--forward", args.fwd, "--backward", args.bwd, "--file", str(doc),
         "--plot", str(IMAGES / "bidirectional.png"), "--json", str(out_dir / "bi.json")], log)
    bi = json.loads((ROOT / out_dir / "bi.json").read_text())
    figures["bidirectional"] = bi.get("summary", {k: v for k, v in bi.items() if not isinstance(v, list)})
    run(["codecheck", "--backend", "torch", "--checkpoint", args.fwd, "--temperature", "0.8",
         "--json", str(out_dir / "cc.json")], log)
    figures["codecheck"] = json.loads((ROOT / out_dir / "cc.json").read_text())["summary"]
    run(["attention", "--backend", "torch", "--checkpoint", args.fwd, "--prompt", PROMPT,
         "--plot", str(IMAGES / "attention.png")], log)  # fmt: skip
    result = {"commands": log, "figures": figures, "python": sys.version.split()[0],
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# README figures", "", f"Written by `python -m benchmarks.readme_figures` ({result['measured_at']}).", "",
             "## Commands", "", *[f"- `{c['command']}` ({c['seconds']} s)" for c in log], ""]
    for section, values in figures.items():
        lines += [f"## {section}", "", *[f"- {k}: {v}" for k, v in _flat(values)], ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def default_run_figures() -> dict:
    """The Training section's figures: the default run and the one before it, from default-run.json."""
    if not (ROOT / DEFAULT_RUN).is_file():
        raise SystemExit(f"{DEFAULT_RUN} is missing: run python -m benchmarks.default_run first")
    result = json.loads((ROOT / DEFAULT_RUN).read_text())
    keep = ("command", "wall_s", "load_average", "parameters", "steps", "tokens_per_step", "first_step_s",
            "final_val_loss", "unigram_baseline", "val_bits_per_byte", "val_perplexity")  # fmt: skip
    rows = {r["name"]: {k: r[k] for k in keep} for r in result["rows"]}
    return {"source": f"{DEFAULT_RUN} ({result['run']['command']}, {result['run']['date']}, "
                      f"commit {result['machine']['commit']})", **rows}  # fmt: skip


def _flat(values: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(values, dict):
        return [item for k, v in values.items() for item in _flat(v, f"{prefix}{k}.")]
    if isinstance(values, list):
        return [(prefix.rstrip("."), json.dumps(values))]
    return [(prefix.rstrip("."), values)]


if __name__ == "__main__":
    sys.exit(main())
