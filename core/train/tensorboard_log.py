"""TensorBoard event files for a run (`train --tensorboard`), beside metrics.jsonl.

Written with TensorBoard's own framework-free writer (`tensorboard` package: its event-file writer
and the scalar and text plugins' summary protos), so neither torch nor TensorFlow is imported.
`tensorboard --logdir runs/` then shows train and validation loss, learning rate, tokens/s, the
gradient norm (before clipping) and the sample text of each evaluation for every run side by side.

On resume the writer first records a session start at the resumed step: TensorBoard then drops
events of later steps written before the interruption, so each step is shown once, as in
metrics.jsonl.
"""

from __future__ import annotations

import time
from pathlib import Path

TENSORBOARD_DIR = "tensorboard"
# metrics.jsonl key -> TensorBoard tag (the part before "/" groups the charts).
TAGS = {
    "train_loss": "train/loss",
    "lr": "train/learning_rate",
    "tokens_per_second": "train/tokens_per_second",
    "grad_norm": "train/grad_norm",
    "val_loss": "val/loss",
    "val_accuracy": "val/accuracy",
    "val_perplexity": "val/perplexity",
}


def check_tensorboard() -> None:
    """Before a run starts: a one-line error if the `tensorboard` package is missing."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard==2.21.0")


class TensorBoardLog:
    """Scalars and text for one run, in `run_dir/tensorboard/`."""

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.plugins.scalar.summary_v2 import scalar_pb
        from tensorboard.plugins.text.summary_v2 import text_pb
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event, self._scalar_pb, self._text_pb = Event, scalar_pb, text_pb
        self._writer = EventFileWriter(str(run_dir / TENSORBOARD_DIR), flush_secs=10)
        if resume_step is not None:  # purge what an interrupted run wrote past its last checkpoint
            start = SessionLog(status=SessionLog.START)
            self._writer.add_event(Event(wall_time=time.time(), step=resume_step, session_log=start))

    def scalars(self, step: int, record: dict[str, float]) -> None:
        """A metrics.jsonl record as TensorBoard scalars (its keys renamed by TAGS)."""
        for key, tag in TAGS.items():
            if key in record:
                summary = self._scalar_pb(tag, float(record[key]))
                self._writer.add_event(self._event(wall_time=time.time(), step=step, summary=summary))

    def text(self, step: int, tag: str, text: str) -> None:
        self._writer.add_event(self._event(wall_time=time.time(), step=step, summary=self._text_pb(tag, text)))

    def close(self) -> None:
        self._writer.close()  # flushes
