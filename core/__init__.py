"""The backend-neutral core: model spec, reference forward pass, data, training loop, sampling."""
