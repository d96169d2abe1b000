"""Which tinygrad device to run on: tinygrad's own default (honouring `DEV=`), else CPU.

tinygrad's CPU device compiles its kernels with clang; a machine without clang gets a one-line
error here instead of a `FileNotFoundError` from deep inside the first kernel compile.
"""

from __future__ import annotations

import shutil

from tinygrad import Device, Tensor, dtypes

from core.model.interface import SetupError

NO_CLANG = (
    "tinygrad's CPU device needs the clang compiler, which is not installed: "
    "install it (Debian/Ubuntu: `apt-get install -y clang`) or use --backend torch"
)


def available_devices() -> list[str]:
    """Devices tinygrad can open here (CPU always counts; it fails later only without clang)."""
    devices = [d for d in Device.get_available_devices() if not d.startswith(("DISK", "NPY", "TINYFS", "PYTHON"))]
    return devices or ["CPU"]


def _check(name: str) -> str:
    try:
        device = Device[name].device  # opening the device is the only reliable availability check
    except Exception:
        raise ValueError(
            f"device {name!r} is not available to tinygrad here: choose one of {', '.join(available_devices())}"
        ) from None
    if device.split(":")[0] == "CPU" and shutil.which("clang") is None:
        raise SetupError(NO_CLANG)
    return device


def select_device(requested: str | None = None) -> str | tuple[str, ...]:
    """The requested device if it opens, else tinygrad's default, else CPU. A comma-separated list
    ("CPU:0,CPU:1", "CUDA:0,CUDA:1") gives a tuple: data parallelism over those devices in one process."""
    if requested is not None and "," in requested:
        devices = tuple(_check(name.strip().upper()) for name in requested.split(","))
        if len(set(devices)) != len(devices):
            raise ValueError(f"devices {requested!r} repeat one another: name each device once, e.g. CPU:0,CPU:1")
        return devices
    if requested is not None:
        return _check(requested.upper())
    try:
        return _check(Device.DEFAULT)
    except ValueError:
        return _check("CPU")


def check_compiles(name: str, device: str | tuple) -> None:
    """A lower-precision dtype only where the device compiles it (this machine's clang has no x86 __bf16)."""
    try:
        probe = Tensor.ones(2, 2, device=device).cast(getattr(dtypes, name))
        (probe @ probe).realize()
    except Exception as err:  # a compiler failure from deep inside tinygrad, said in one line instead
        raise ValueError(
            f"tinygrad cannot compute in {name} on {device} here: its kernel compiler rejects the dtype "
            f"({type(err).__name__}); use --dtype float16 or float32"
        ) from None
