"""Near-duplicate documents, found by a content hash of normalized text, so they are trained on once.

The standard library holds about 80 generated codec modules (`encodings/cp*.py`, `iso8859_*`,
`mac_*`, the CJK codec wrappers) that differ only in their tables, and dozens of two-line
`__init__.py`/`__main__.py` files. Kept, they let the same text appear in both splits and flatter
the validation loss. The rule: blank comments, string literals and numbers, collapse whitespace, and
hash what is left; two documents with the same hash and sizes within 25% of each other are
near-duplicates, and the first by name is kept. (Comparable sizes keep apart modules that share a
skeleton but hold different text in one large string, such as doctest files.)
"""

from __future__ import annotations

import hashlib
import re

# Triple-quoted strings first, then one-line '...' and "..." with escapes; numbers after that.
_STRINGS = re.compile(r"""(?s)(\"\"\".*?\"\"\"|'''.*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')""")
_COMMENTS = re.compile(r"#[^\n]*")
_NUMBERS = re.compile(r"\b\d[\w.]*")  # 12, 0x80, 1.5e3
SIZE_RATIO = 1.25


def normalized(text: str) -> str:
    """The text with comments, string literals and numbers blanked and whitespace collapsed."""
    text = _COMMENTS.sub("", _STRINGS.sub('""', text))
    return " ".join(_NUMBERS.sub("0", text).split())


def near_duplicates(names: list[str], documents: list[str]) -> dict[int, int]:
    """{index of a near-duplicate: index of the document it repeats}; `names` must be sorted."""
    groups: dict[bytes, list[int]] = {}
    found: dict[int, int] = {}
    for i, text in enumerate(documents):
        key = hashlib.sha256(normalized(text).encode("utf-8")).digest()
        kept = groups.setdefault(key, [])
        n = len(text)
        same = [k for k in kept if max(n, len(documents[k])) <= SIZE_RATIO * min(n, len(documents[k]))]
        if same:
            found[i] = same[0]
        else:
            kept.append(i)
    return found
