"""The tinygrad backend (see `backend.py`)."""

from backends.tinygrad.backend import TinygradBackend as Backend

__all__ = ["Backend"]
