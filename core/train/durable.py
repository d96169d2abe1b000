"""Writes that survive a power cut, not only a crash.

A rename is atomic, but without `fsync` the kernel may put the rename on disk before the data it
points to: after a power cut the new name can hold an empty or partial file. So every file is
written to a temporary name, flushed with `fsync`, renamed into place, and the folder holding it is
flushed too (the rename itself lives in the folder). Callers delete an old copy only after that.
"""

from __future__ import annotations

import os
from pathlib import Path


class SaveError(OSError):
    """A file could not be written (full disk, permissions); what was there before is kept."""


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` (a new file in a temporary folder) and flush it to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Replace `path` by `data` atomically and durably: temporary file, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write_file(tmp, data)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise SaveError(f"could not write {path} ({err.strerror or err}): the previous file is kept") from None
