"""The run's metrics.jsonl: one JSON object per optimizer step (train loss, learning rate, speed, and
the validation numbers at evaluation steps). It is what the training curve is drawn from.

On resume the lines after the resumed step are dropped. The kept lines are written to a temporary
file that replaces the old one (`core.train.durable`), so a crash or a full disk during the rewrite
leaves the old file whole; a last line cut short by a kill is dropped.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from core.train.durable import write_durably


class MetricsLog:
    """metrics.jsonl: one JSON object per line; on resume, lines after the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is not None and path.exists():
            lines = path.read_text().splitlines()
            kept = [line for i, line in enumerate(lines) if _step_of(line, i == len(lines) - 1, path) <= resume_step]
            write_durably(path, "".join(line + "\n" for line in kept).encode())
        elif path.exists():  # a new run never overwrites one (the command line refuses earlier, too)
            raise ValueError(f"{path} exists: a new run refuses to overwrite it (choose another --out)")

    def write(self, record: dict, sync: bool = False) -> None:
        """Append one line; `sync` flushes it to disk (before a checkpoint that must not run ahead of it)."""
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            if sync:
                f.flush()
                os.fsync(f.fileno())


def _step_of(line: str, last: bool, path: Path) -> float:
    """The step a metrics line records; a damaged last line (cut by a kill) counts as after every step."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        if last:
            return math.inf
        raise ValueError(f"{path} has a damaged line ({line[:40]!r}): repair or remove it, then resume") from None
