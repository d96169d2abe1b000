"""The PyTorch backend (see `backend.py`)."""

from backends.torch.backend import TorchBackend as Backend

__all__ = ["Backend"]
