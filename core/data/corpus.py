"""Where the training text comes from: a file, a folder, Python's standard library, or patterns.

`load_corpus` turns the user's `--data` into a `Corpus`: a list of documents (one per file) with
their names. Files that cannot be training text (not UTF-8, empty, a saved "404: Not Found" page)
and near-duplicates of another file (`core.data.dedup`) are skipped and reported in one line.
`split_documents` decides which documents are for validation by a hash of each name, so adding a
file never moves the others.

The default corpus is the `.py` source of the running Python's standard library, test suites
included (they are real code too), site-packages excluded: about 1,760 files and 31 MB on
CPython 3.11, on every machine that has Python, with no download.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.data.dedup import near_duplicates

SYNTHETIC_LABEL = "synthetic patterns (counting, sums, repeats)"
DATA_HINT = "pass a text file, a folder of text files, 'synthetic', or nothing for the default corpus"


@dataclass
class Corpus:
    documents: list[str]  # the text of each document (file)
    names: list[str]  # relative path of each document, same order as `documents`
    description: str  # one line for the log, e.g. "Python 3.11 standard library: 1,758 .py files, 31.5 MB"
    skipped: list[str] = field(default_factory=list)  # relative paths of files left out
    skip_reasons: list[str] = field(default_factory=list)  # why each of `skipped` was left out

    @property
    def n_bytes(self) -> int:
        return sum(len(d.encode("utf-8")) for d in self.documents)

    def skip_summary(self) -> str:
        """One line naming the skipped files (the first few) and why; '' when none were skipped."""
        if not self.skipped:
            return ""
        counts: dict[str, int] = {}
        for reason in self.skip_reasons:
            counts[reason] = counts.get(reason, 0) + 1
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        shown = ", ".join(self.skipped[:3]) + (f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else "")
        return f"skipped {len(self.skipped)} file(s) ({why}): {shown}"


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes / 1e3:.1f} kB"


def _looks_like_error_page(text: str) -> bool:
    # What a failed download saves instead of the file: GitHub raw's "404: Not Found", or an HTML page.
    head = text.lstrip()[:2048].lower()
    if head.startswith(("404: not found", "404 not found", "not found", "404 - not found")):
        return True
    is_html = head.startswith(("<!doctype html", "<html"))
    return is_html and any(m in head for m in ("404", "not found", "403 forbidden", "access denied"))


def _read_text(path: Path) -> tuple[str | None, str]:
    """The file's text, or None and the reason it is not training text."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8"
    if not text.strip():
        return None, "empty"
    if _looks_like_error_page(text):
        return None, "error page"
    return text, ""


def _read_files(root: Path, paths: list[Path]) -> Corpus:
    corpus = Corpus(documents=[], names=[], description="")
    for path in paths:
        name = path.relative_to(root).as_posix() if path != root else path.name
        text, reason = _read_text(path)
        if text is None:
            corpus.skipped.append(name)
            corpus.skip_reasons.append(reason)
        else:
            corpus.documents.append(text)
            corpus.names.append(name)
    return corpus


def _drop_near_duplicates(corpus: Corpus) -> None:
    """Leave out documents that repeat another up to tables and comments (`core.data.dedup`), in place."""
    repeats = near_duplicates(corpus.names, corpus.documents)
    for i in sorted(repeats):
        corpus.skipped.append(corpus.names[i])
        corpus.skip_reasons.append("near-duplicate")
    corpus.documents = [d for i, d in enumerate(corpus.documents) if i not in repeats]
    corpus.names = [n for i, n in enumerate(corpus.names) if i not in repeats]


def _visible_files(folder: Path, pattern: str = "*") -> list[Path]:
    # Hidden files and folders (.git, .DS_Store) are tooling, not text: left out without a report.
    files = [p for p in folder.rglob(pattern) if p.is_file()]
    files = [p for p in files if not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _stdlib_files() -> tuple[Path, list[Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = _visible_files(root, "*.py")
    return root, [p for p in files if p.relative_to(root).parts[0] not in ("site-packages", "dist-packages")]


def synthetic_corpus(n_documents: int = 200, seed: int = 0) -> Corpus:
    """Patterned text a tiny model can learn in minutes: counting, sums and repeated words.

    Deterministic for a given seed. Each document is 40 lines mixing three line types:
    "count 3 4 5 6 7 8", "2 + 5 = 7" and "ab ab ab ab ab".
    """
    rng = np.random.default_rng(seed)
    syllables = ["ab", "cd", "ef", "gh", "xy", "ba", "ko", "mi"]
    documents, names = [], []
    for d in range(n_documents):
        lines = []
        for _ in range(40):
            kind = rng.integers(3)
            if kind == 0:
                start = int(rng.integers(0, 90))
                lines.append("count " + " ".join(str(start + i) for i in range(6)))
            elif kind == 1:
                a, b = (int(v) for v in rng.integers(0, 10, size=2))
                lines.append(f"{a} + {b} = {a + b}")
            else:
                word = syllables[int(rng.integers(len(syllables)))]
                lines.append(" ".join([word] * int(rng.integers(3, 7))))
        documents.append("\n".join(lines) + "\n")
        names.append(f"synthetic/{d:04d}.txt")
    description = f"{SYNTHETIC_LABEL}: {n_documents:,} documents, {_mb(sum(len(doc) for doc in documents))}"
    return Corpus(documents=documents, names=names, description=description)


def _cap(corpus: Corpus, max_bytes: int) -> None:
    """Keep a deterministic subset of documents of at most `max_bytes` bytes, in place."""
    sizes = [len(d.encode("utf-8")) for d in corpus.documents]
    if sum(sizes) <= max_bytes:
        return
    # A pseudo-random but fixed order (a hash of the name, salted so it is unrelated to the split),
    # so the subset samples the whole corpus instead of its alphabetically first folder.
    order = sorted(range(len(sizes)), key=lambda i: hashlib.sha256(f"subset:{corpus.names[i]}".encode()).digest())
    keep, total = [], 0
    for i in order:
        if total + sizes[i] <= max_bytes:
            keep.append(i)
            total += sizes[i]
    if not keep:  # every document is larger than the cap: take the first one's beginning
        i = order[0]
        corpus.documents[i] = corpus.documents[i].encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
        keep = [i]
    keep.sort()
    corpus.documents = [corpus.documents[i] for i in keep]
    corpus.names = [corpus.names[i] for i in keep]


def load_corpus(data: str | Path | None = None, max_bytes: int | None = None) -> Corpus:
    """Read the training text.

    data: a text file (one document), a folder (each file below it, recursively, in sorted order,
        hidden files left out), None for the default corpus (Python's standard library source), or
        "synthetic" for generated patterns (a folder of that name is "./synthetic").
    max_bytes: keep a deterministic subset of the documents of at most this many UTF-8 bytes, for
        quick runs (a single document is cut to length).
    """
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"max_bytes={max_bytes} is invalid: use a positive number of bytes, or None for all")
    if data is not None and str(data) == "synthetic":
        corpus, label, unit = synthetic_corpus(), SYNTHETIC_LABEL, "documents"
    else:
        if data is None:
            root, files = _stdlib_files()
            label = f"Python {sys.version_info.major}.{sys.version_info.minor} standard library"
            unit = ".py files"
        else:
            root = Path(data).expanduser()
            if not root.exists():
                raise FileNotFoundError(f"no such file or folder: {str(data)!r}: {DATA_HINT}")
            files = _visible_files(root) if root.is_dir() else [root]
            if not files:
                raise ValueError(f"folder {str(data)!r} has no files: {DATA_HINT}")
            label, unit = str(data), "files"
        corpus = _read_files(root, files)
        _drop_near_duplicates(corpus)
        if not corpus.documents:
            raise ValueError(f"no usable text in {label}: {corpus.skip_summary()}; {DATA_HINT}")
    capped = ""
    if max_bytes is not None:
        _cap(corpus, max_bytes)
        capped = f" (subset, max_bytes={max_bytes:,})"
    n = len(corpus.documents)
    corpus.description = f"{label}{capped}: {n:,} {unit if n != 1 else unit[:-1]}, {_mb(corpus.n_bytes)}"
    return corpus


def _bucket(name: str) -> int:
    """A number in 0..999 fixed by the document's name alone."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % 1000


def split_documents(corpus: Corpus, val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """Training and validation documents.

    Two or more documents: a document goes to validation when the hash of its name falls in the
    first `val_fraction` of 1000 buckets, so the split is deterministic and adding a file never moves
    another. If that leaves a split empty (tiny corpora), the document whose bucket is nearest the
    threshold moves over, so both splits are non-empty. One document: its first (1 - val_fraction)
    of characters train, the rest validate (nanoGPT's split).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} is invalid: use a value between 0 and 1, such as 0.1")
    if not corpus.documents:
        raise ValueError(f"the corpus has no documents: {DATA_HINT}")
    if len(corpus.documents) == 1:
        text = corpus.documents[0]
        cut = int(len(text) * (1.0 - val_fraction))
        return [text[:cut]], [text[cut:]]
    threshold = round(1000 * val_fraction)
    buckets = [_bucket(name) for name in corpus.names]
    is_val = [b < threshold for b in buckets]
    if not any(is_val):
        is_val[min(range(len(buckets)), key=lambda i: (buckets[i], corpus.names[i]))] = True
    elif all(is_val):
        is_val[max(range(len(buckets)), key=lambda i: (buckets[i], corpus.names[i]))] = False
    train = [d for d, v in zip(corpus.documents, is_val) if not v]
    val = [d for d, v in zip(corpus.documents, is_val) if v]
    return train, val
