"""Ctrl-C and SIGTERM as a request to stop between steps: the current step finishes and is saved, so
`--resume` continues exactly where the run stopped. A second Ctrl-C stops at once."""

from __future__ import annotations

import signal


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so the current step finishes and is saved."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.signal_name is not None:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
