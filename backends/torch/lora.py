"""LoRA in PyTorch: a model whose target Linear layers carry trainable low-rank adapters (core/model/lora.py)
over frozen base weights.

`LoraTorchModel` is the backend's `TorchModel` with its target `Linear` modules swapped for `LoraLinear`
(holding the same weight and bias Parameters) and `named`, the parameters that train, cut down to the
adapters (and the biases/norms the config asks for): gradients, clipping, AdamW and its state see only
those. `backends/tinygrad/lora.py` is the same for tinygrad.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from backends.torch.backend import TorchModel
from backends.torch.model import Linear, linear
from core.convert.quantize import check_model_params
from core.model.config import GPTConfig, TrainConfig
from core.model.lora import ADAPTER_SUFFIXES, LoraConfig, check_adapters, merge, target_layers, trainable_shapes


class LoraLinear(nn.Module):
    """y = x @ W + b + scale * (x @ A) @ B, with W and b the frozen base Linear's own Parameters."""

    def __init__(self, base: Linear, rank: int, scale: float):
        super().__init__()
        self.weight, self.bias = base.weight, base.bias
        n_in, n_out = base.weight.shape
        self.lora_A = nn.Parameter(torch.zeros(n_in, rank, device=base.weight.device))  # values loaded later
        self.lora_B = nn.Parameter(torch.zeros(rank, n_out, device=base.weight.device))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias) + (x @ self.lora_A) @ self.lora_B * self.scale  # (B, T, r) inside


class LoraTorchModel(TorchModel):
    lora: LoraConfig | None = None  # set once the adapters exist (TorchModel.__init__ loads the base before)

    def __init__(self, config: GPTConfig, params: dict[str, np.ndarray], adapters: dict[str, np.ndarray],
                 lora: LoraConfig, device: str, train: TrainConfig):
        super().__init__(config, params, device, train)  # the plain model with the base weights
        check_adapters(config, lora, adapters)
        self._check_trainable()  # int8 bases are refused here too
        for layer in target_layers(config, lora):
            parent, child = layer.rsplit(".", 1)
            setattr(self.net.get_submodule(parent), child, LoraLinear(self.net.get_submodule(layer), lora.rank,
                                                                      lora.scale))
        trains = set(trainable_shapes(config, lora))
        every = dict(self.net.named_parameters())
        self.base = {n: p for n, p in every.items() if not n.endswith(ADAPTER_SUFFIXES)}  # spec names
        self.named = {n: p for n, p in every.items() if n in trains}  # what trains
        for name, p in every.items():
            p.requires_grad_(name in trains)  # frozen weights get no gradient at all
        self.lora = lora
        self.load_adapters(adapters)
        self.optimizer = self._make_optimizer()  # AdamW over the adapters only
        if self.train_net is not self.net:  # DDP wrapped the plain modules: wrap the adapted ones
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_net = torch.nn.parallel.DistributedDataParallel(self.net, device_ids)

    def adapters(self) -> dict[str, np.ndarray]:
        """What trains (adapters, and biases/norms if asked) as float32 numpy, by name."""
        return {name: p.detach().cpu().numpy().copy() for name, p in self.named.items()}

    @torch.no_grad()
    def load_adapters(self, adapters: dict[str, np.ndarray]) -> None:
        check_adapters(self.config, self.lora, adapters)
        for name, p in self.named.items():
            p.copy_(torch.from_numpy(np.asarray(adapters[name], dtype=np.float32)))

    def params(self) -> dict[str, np.ndarray]:
        """The adapted model as plain parameters: adapters merged into their weights (core.model.lora.merge)."""
        if self.lora is None:
            return super().params()
        base = {name: p.detach().cpu().numpy().copy() for name, p in self.base.items()}
        return merge(base, self.adapters(), self.lora)

    @torch.no_grad()
    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Overwrite the base weights (plain names); the adapters stay."""
        if self.lora is None:
            return super().load_params(params)
        check_model_params(self.config, params)
        for name, p in self.base.items():
            p.copy_(torch.from_numpy(np.asarray(params[name], dtype=np.float32)))
