"""The run's metrics.jsonl: one JSON object per optimizer step (train loss, learning rate, speed, and
the validation numbers at evaluation steps). It is what the training curve is drawn from."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """metrics.jsonl: one JSON object per line; on resume, lines after the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is not None and path.exists():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
            path.write_text("".join(line + "\n" for line in kept))
        elif path.exists():
            path.unlink()

    def write(self, **record: object) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
