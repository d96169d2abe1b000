"""What every benchmark shares: interleaved timing with medians, the machine and versions, memory.

Timing. A shared, loaded machine makes absolute timings drift by several times within minutes, so
variants that are compared are timed side by side: each is warmed up first (its first call, where
tinygrad compiles and captures its JIT, is reported on its own), then the variants take turns,
A B C A B C ..., and each reports the median of its repetitions. Ratios between variants of one
`interleave` call are the trustworthy figures; absolute ones carry the load of their moment, which
is recorded (`load_average`).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

Variant = Callable[[], object]  # one unit of work, synchronized; may return a dict of extra figures


@dataclass
class Timing:
    """Seconds per call of one variant: its warm-up calls and its timed repetitions."""

    warmup_s: list[float] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    extras: list[dict] = field(default_factory=list)  # what each timed call returned, when a dict
    memory: dict = field(default_factory=dict)  # MemoryMeter figures of the warm-up, when measured

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    def extra(self, key: str) -> float | None:
        """The median of a figure the variant returned (e.g. time to first token)."""
        values = [e[key] for e in self.extras if e.get(key) is not None]
        return statistics.median(values) if values else None

    def as_dict(self) -> dict:
        return {
            "median_s": round(self.median_s, 6),
            "times_s": [round(t, 6) for t in self.times_s],
            "first_call_s": round(self.warmup_s[0], 3) if self.warmup_s else None,
            "warmup_s": round(sum(self.warmup_s), 3),
            **self.memory,
        }


def interleave(
    variants: dict[str, Variant],
    repeats: int,
    warmup: int | dict[str, int] = 1,
    log: Callable[[str], None] | None = None,
    meters: dict[str, MemoryMeter] | None = None,
) -> dict[str, Timing]:
    """Warm each variant up (`warmup` calls, or a count per name; its memory measured where `meters` has
    a meter for it), then time `repeats` rounds in turn."""
    timings = {name: Timing() for name in variants}
    for name, fn in variants.items():
        meter = (meters or {}).get(name)
        with meter or contextlib.nullcontext():
            for _ in range(warmup[name] if isinstance(warmup, dict) else warmup):
                start = time.perf_counter()
                fn()
                timings[name].warmup_s.append(time.perf_counter() - start)
        if meter is not None:
            timings[name].memory = meter.figures
        if log is not None:
            log(f"  warmed up {name} in {sum(timings[name].warmup_s):.1f} s")
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            out = fn()
            timings[name].times_s.append(time.perf_counter() - start)
            if isinstance(out, dict):
                timings[name].extras.append(out)
    return timings


def load_average() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names: tuple[str, ...] = ("numpy", "torch", "tinygrad", "transformers")) -> dict[str, str]:
    """Installed versions of the libraries that matter here (absent ones left out)."""
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def machine() -> dict:
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "system": platform.platform(),
        "python": sys.version.split()[0],
        "commit": git_commit(),
    }


def torch_sync(device) -> None:
    """Wait for torch's queued work on `device` (a no-op on CPU, where every op is synchronous)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ---- memory: peak resident set size on CPU (Linux /proc, no psutil), peak allocation on CUDA


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRSS:
    """Peak resident memory of this process during a `with` block, in MB, and its rise above the start.

    Linux keeps the peak in /proc/self/status (VmHWM) and resets it when "5" is written to
    /proc/self/clear_refs, so each block gets its own peak. Elsewhere the peak is the whole process's
    (resource.getrusage), and `reset` is False to say so.
    """

    def __enter__(self) -> PeakRSS:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.start_mb = (_status_kb("VmRSS") or 0) / 1024
        return self

    def __exit__(self, *exc: object) -> None:
        peak_kb = _status_kb("VmHWM") if self.reset else None
        if peak_kb is None:
            import resource

            scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KB on Linux
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale // 1024
        self.peak_mb = peak_kb / 1024

    def as_dict(self) -> dict:
        return {
            "peak_rss_mb": round(self.peak_mb, 1),
            "rise_mb": round(self.peak_mb - self.start_mb, 1),
            "per_block": self.reset,
        }


class MemoryMeter:
    """Memory that running a block takes: the rise of the resident set on CPU (`PeakRSS`), torch's peak
    allocation on CUDA, tinygrad's allocated bytes after the block on its other devices. `backend` is
    torch, tinygrad or hf. `interleave` wraps each variant's warm-up in one, where every buffer a call
    needs is allocated for the first time (later calls reuse memory the process already holds)."""

    def __init__(self, backend: str, device: str):
        self.backend, self.device, self.figures = backend, str(device), {}

    def __enter__(self) -> MemoryMeter:
        self.cuda = self.backend in ("torch", "hf") and self.device.startswith("cuda")
        self.rss = None if self.cuda or self._tinygrad_device() else PeakRSS().__enter__()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def _tinygrad_device(self) -> bool:
        return self.backend == "tinygrad" and not self.device.upper().startswith("CPU")

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            import torch

            self.figures = {"peak_allocated_mb": round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)}
        elif self._tinygrad_device():
            from tinygrad.helpers import GlobalCounters

            self.figures = {"allocated_mb": round(GlobalCounters.mem_used / 2**20, 1)}
        else:
            self.rss.__exit__(*exc)
            self.figures = self.rss.as_dict()


class Progress:
    """Timestamped progress lines on stderr (with the load average), and the `run` record of a results
    file: its command, date, duration and the load seen while it ran."""

    def __init__(self):
        self.started, self.loads = time.perf_counter(), [load_average()]

    def __call__(self, message: str) -> None:
        self.loads.append(load_average())
        print(
            f"[{time.perf_counter() - self.started:6.0f} s, load {self.loads[-1]}] {message}",
            file=sys.stderr,
            flush=True,
        )

    def record(self, prog: str, argv: list[str] | None) -> dict:
        from datetime import UTC, datetime
        from shlex import join

        return {
            "command": f"python -m {prog} " + join(argv if argv is not None else sys.argv[1:]),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "duration_s": round(time.perf_counter() - self.started, 1),
            "load_average": {"start": self.loads[0], "max": max(self.loads), "end": load_average()},
        }


def result_of(prog: str, argv: list[str] | None, log: Progress, **figures) -> dict:
    """A results file's record: `figures` (config, sections...), the machine, the versions and the run's
    command, date and load (`prog` is the module run with -m, e.g. benchmarks.matvec)."""
    return {**figures, "machine": machine(), "versions": package_versions(), "run": log.record(prog, argv)}


def write_results(stem: Path, result: dict, markdown: str) -> None:
    """<stem>.json and <stem>.md, and the markdown on stdout."""
    import json

    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)
