"""The backend-neutral core: model spec, reference forward pass, data, training loop, sampling."""

__version__ = "0.1.0"
