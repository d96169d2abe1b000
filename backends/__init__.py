"""Backend registry: a backend's name -> the module that implements it, imported only when chosen.

Running with tinygrad never imports torch, and the reverse: `get_backend` imports one module, and
each backend package imports only its own framework.
"""

from __future__ import annotations

import importlib
import os

from core.model.interface import Backend

BACKENDS: dict[str, str] = {"tinygrad": "backends.tinygrad", "torch": "backends.torch"}
DEFAULT_BACKEND = "tinygrad"


def resolve_name(name: str | None = None) -> str:
    """The backend to use: the argument, else the GPT_BACKEND environment variable, else tinygrad."""
    chosen = (name or os.environ.get("GPT_BACKEND") or DEFAULT_BACKEND).lower()
    if chosen not in BACKENDS:
        raise ValueError(f"unknown backend {chosen!r}: choose one of {', '.join(BACKENDS)}")
    return chosen


def get_backend(name: str | None = None, device: str | None = None) -> Backend:
    """The named backend on `device` (None: the best device it finds)."""
    module = importlib.import_module(BACKENDS[resolve_name(name)])
    return module.Backend(device)
