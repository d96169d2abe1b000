"""Streaming text out token by token: the ids generated so far are decoded as a whole and only the new
characters are written, so a character that spans several byte-level tokens appears once complete."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from core.data.tokenizer import Tokenizer


class TextStream:
    """Feed it token ids as they are generated (`add`); it writes each new piece of text once."""

    def __init__(self, tokenizer: Tokenizer, write: Callable[[str], None] | None) -> None:
        self.tokenizer, self.write = tokenizer, write
        self.ids: list[int] = []
        self.shown = ""  # the text written so far

    def add(self, token: int) -> None:
        if token == self.tokenizer.eot_id:
            return
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if self.write and not text.endswith("\ufffd"):  # wait until a split multi-byte character is whole
            self.write(text[len(self.shown) :])
            self.shown = text

    def finish(self, new_ids: Sequence[int]) -> str:
        """The whole new text of `new_ids`, writing whatever is not shown yet (a trailing partial character)."""
        text = self.tokenizer.decode([t for t in new_ids if t != self.tokenizer.eot_id])
        if self.write and len(text) > len(self.shown):
            self.write(text[len(self.shown) :])
        return text
