"""The context window's one rule: a model sees at most `block_size` tokens, so a longer sequence keeps
its last ones (nanoGPT's cropping). Generation, the chat session, attention maps and LAMBADA all crop
with `crop_context`, so "which tokens did the model see?" has one answer everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def crop_context(ids: Sequence[T], size: int) -> tuple[list[T], int]:
    """The last `size` items of `ids` and how many were dropped from the front."""
    if size < 1:
        raise ValueError(f"a context of {size} tokens cannot hold anything: use a size of at least 1")
    dropped = max(0, len(ids) - size)
    return list(ids[dropped:]), dropped
