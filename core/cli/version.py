"""The --version line: this package's version and the installed frameworks'."""

from __future__ import annotations


def version_text() -> str:
    """This package's version and both frameworks' (read from their installed metadata: neither is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    from core import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return f"next-word-prediction {__version__} (tinygrad {installed('tinygrad')}, torch {installed('torch')})"

