"""Data parallelism on PyTorch's own engine: DistributedDataParallel under `torchrun`.

`torchrun --nproc_per_node=N train_next_word_prediction.py --backend torch ...` starts N processes
and tells each its RANK, LOCAL_RANK and WORLD_SIZE. Each process joins one process group (gloo on
CPU, NCCL on CUDA), holds a full copy of the model, trains on its own batches, and DDP averages the
gradients during backward, so every copy takes the same optimizer step.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist


def world_from_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) as torchrun sets them; (0, 0, 1) in a single process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_process_group(device: str) -> None:
    """Join the group torchrun prepared, once per process."""
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        # Leave the group while the interpreter is still whole: a process that exits without it can
        # die in gloo's worker threads during shutdown ("terminate called without an active
        # exception", SIGABRT), turning a finished run into a failed one (pytorch/pytorch#190489).
        atexit.register(leave_process_group)


def leave_process_group() -> None:
    """Destroy this process's group (nothing to do if it was never joined or already left)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The average of `value` over all processes (itself when there is one)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value


def any_rank(flag: bool, device: str = "cpu") -> bool:
    """True on every process if it is True on any: ranks must stop at the same step."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
