"""Tokens in, text out, as it can safely be shown: whole characters only, never part of a stop string.

A byte-level BPE token may hold half of a UTF-8 character, which decodes as U+FFFD until the rest
arrives, so text is released only when it no longer ends in U+FFFD (as `core.generate.session` streams it).
Stop strings: once one appears, the text ends just before it. While the released text's tail could
still grow into a stop string, that tail is held back, so a client never sees part of a stop string.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.generate.generation import Tokenizer


class TextStream:
    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str] = ()):
        self.tokenizer, self.stop = tokenizer, [s for s in stop if s]
        self.ids: list[int] = []
        self.sent = ""  # text released so far
        self.stopped = False  # a stop string was found: the text is final

    def push(self, token: int) -> str:
        """Add one token; returns the newly released text (may be empty)."""
        if self.stopped:
            return ""
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        cut = self._first_stop(text)
        if cut is not None:
            self.stopped = True
            return self._release(text[:cut])
        if text.endswith("\ufffd"):
            return ""  # wait until a split multi-byte character is whole
        return self._release(text[: len(text) - self._held(text)])

    def finish(self) -> str:
        """The end of the sequence: release whatever was held back."""
        if self.stopped:
            return ""
        return self._release(self.tokenizer.decode(self.ids))

    def _release(self, text: str) -> str:
        new = text[len(self.sent) :] if text.startswith(self.sent) else ""
        self.sent += new
        return new

    def _first_stop(self, text: str) -> int | None:
        found = [i for i in (text.find(s, max(0, len(self.sent) - len(s))) for s in self.stop) if i >= 0]
        return min(found) if found else None

    def _held(self, text: str) -> int:
        """Length of the longest tail of `text` that is the start of some stop string."""
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best
