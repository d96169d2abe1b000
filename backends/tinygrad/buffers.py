"""Host values into and out of realized tinygrad buffers, without a new Tensor per call; and Tensors
that share one buffer's memory.

Jitted steps read their inputs from buffers that stay the same between calls, so the inputs are
overwritten in place; on the CPU device both directions go straight through the buffer's memory.
"""

from __future__ import annotations

import numpy as np
from tinygrad import Tensor, dtypes
from tinygrad.helpers import prod
from tinygrad.uop.ops import UOp

ALIGN = 16  # elements: a 64-byte cache line of float32


def write(t: Tensor, values: np.ndarray) -> None:
    """Overwrite realized `t` with host values of its shape and dtype. On the CPU device the bytes are
    written in place: a new Tensor from numpy costs milliseconds of scheduling, more than a decode step."""
    buffer = t.uop.buffer if _on_cpu(t) else None
    if buffer is not None and buffer.nbytes == values.nbytes:
        np.frombuffer(buffer.as_memoryview(force_zero_copy=True), dtype=values.dtype)[:] = values.reshape(-1)
    else:
        t.assign(Tensor(values, device=t.device)).realize()


def read(t: Tensor) -> np.ndarray:
    """A float32 numpy copy of realized `t`, read straight from its memory on the CPU device."""
    buffer = t.uop.buffer if _on_cpu(t) and t.dtype == dtypes.float32 else None
    if buffer is None or buffer.nbytes != 4 * t.numel():
        return t.float().numpy()
    return np.frombuffer(buffer.as_memoryview(force_zero_copy=True), dtype=np.float32).reshape(t.shape).copy()


def _on_cpu(t: Tensor) -> bool:
    return isinstance(t.device, str) and t.device.split(":")[0] == "CPU"


def aligned_starts(shapes: list[tuple[int, ...]], align: int = ALIGN) -> tuple[list[int], int]:
    """Where each of `shapes` starts in one flat buffer, every start a multiple of `align` elements, and
    the buffer's size: our wide loads (wide_loads.py) read 16 floats as one 64-byte-aligned vector, and
    tinygrad's own 4 as a 16-byte-aligned one; either faults at an address that is not so aligned."""
    starts, end = [], 0
    for shape in shapes:
        starts.append(end)
        end += -(-prod(shape) // align) * align
    return starts, end


def views_of(flat: Tensor, shapes: list[tuple[int, ...]]) -> list[Tensor]:
    """Tensors of `shapes` over realized 1-D `flat` (one device) at `aligned_starts`, sharing its memory.

    Each is a buffer of its own to tinygrad (tinygrad's Buffer.view: the same memory at an offset), so
    a kernel reading or writing one is the same kernel wherever it lies. A slice of `flat` would do the
    same arithmetic, but tinygrad writes a slice's offset into the kernel: every layer's kernels would
    then be compiled again. tinygrad does not see that they alias `flat`: realize what writes one
    before what reads the other."""
    base = flat.uop.buffer
    views = []
    for shape, start in zip(shapes, aligned_starts(shapes)[0]):
        part = base.view(prod(shape), flat.dtype, start * flat.dtype.itemsize)
        views.append(Tensor(UOp.from_buffer(part, flat.device)).reshape(shape))
    return views
