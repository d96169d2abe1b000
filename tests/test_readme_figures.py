"""Every figure in the README comes from a results file named in its section (issue 14, item 10).

A section of README.md (a `##` or `###` heading) that states a measured figure must name the file
it comes from, under `benchmarks/results/` or `docs/`. This test reads each section's numbers with a
decimal point or thousands separator (`285.6`, `2.04`, `14.1%`, `1,644`) outside code blocks, and
checks that each one is in a file the section names: written there as it is, or rounded from it (a
percentage also as a fraction). Numbers that are settings or arithmetic rather than measurements are
listed in NOT_MEASURED with the reason, so adding one is a visible decision.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_FILE = re.compile(r"((?:benchmarks/results|docs)/[\w.\-*]+\.(?:md|json))")
# A figure: 1,644 or 285.6 (not part of a version string, a path or a longer token).
FIGURE = re.compile(r"(?<![\w.\-/])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+)(%?)(?![\w.]*/)(?!\.\d)")
ANY_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")

NOT_MEASURED = {
    "3.11": "the Python version",
    "0.99": "a setting (nanoGPT's beta2)",
    "0.6": "the default model's size in millions of parameters, from its shapes",
    "524,288": "8,192 x 64, the token embedding's size",
    "8,192": "the vocabulary size, a setting",
    "49,152": "SmolLM's vocabulary size, from its config",
    "0.7": "a sampling setting (--temperature 0.7)",
    "0.5": "a setting",
    "1.5": "a target of issue 12 (at most 1.5x nanoGPT's wall time)",
}


def sections(text: str) -> list[str]:
    return re.split(r"\n(?=#{2,3} )", text)


def numbers_in(files: set[Path]) -> list[float]:
    return [float(token) for path in files for token in ANY_NUMBER.findall(path.read_text().replace(",", ""))]


def produced(figure: str, percent: bool, measured: list[float]) -> bool:
    """Whether some measured number, rounded to the figure's last digit, is the figure."""
    plain = figure.replace(",", "")
    value = float(plain)
    half_step = 0.5 * 10.0 ** -len(plain.partition(".")[2])  # 285.6 -> 0.05
    candidates = [c for x in measured for c in ((x, x * 100) if percent else (x,))]
    return any(abs(c - value) <= half_step * (1 + 1e-9) for c in candidates)


def unsourced_figures(readme: str) -> list[str]:
    problems = []
    for section in sections(readme):
        files = {p for name in RESULTS_FILE.findall(section) for p in ROOT.glob(name)}
        prose = re.sub(r"```.*?```", "", section, flags=re.S)
        measured = numbers_in(files)
        for figure, percent in set(FIGURE.findall(prose)):
            if figure in NOT_MEASURED or produced(figure, bool(percent), measured):
                continue
            problems.append(f"{section.splitlines()[0]!r}: {figure}{percent} (files named: {sorted(map(str, files))})")
    return sorted(problems)


def test_every_readme_figure_is_in_a_results_file_its_section_names() -> None:
    problems = unsourced_figures((ROOT / "README.md").read_text())
    assert not problems, "figures typed into the README:\n" + "\n".join(problems)


def test_a_typed_figure_is_caught() -> None:
    section = "## Speed\n\nFrom `docs/readme_figures.md`: 123.456 tokens/s.\n"
    assert unsourced_figures(section) and "123.456" in unsourced_figures(section)[0]
