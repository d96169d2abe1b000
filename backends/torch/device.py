"""Which PyTorch device to run on: CUDA, then Apple MPS, then CPU, unless the user names one."""

from __future__ import annotations

import torch


def available_devices() -> list[str]:
    """Devices that can be used on this machine, best first."""
    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]


def select_device(requested: str | None = None) -> str:
    """The requested device if it exists here, else the best available one."""
    available = available_devices()
    if requested is None:
        return available[0]
    name = requested.lower()
    if name == "cuda" and available[0].startswith("cuda"):
        return available[0]
    if name not in available:
        raise ValueError(f"device {requested!r} is not available to torch here: choose one of {', '.join(available)}")
    return name
