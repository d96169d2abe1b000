"""LoRA in tinygrad: a model whose target Linear layers carry trainable low-rank adapters (core/model/lora.py)
over frozen base weights.

`LoraTinygradModel` is the backend's `TinygradModel` with its target `Linear` objects swapped for
`LoraLinear` (holding the same weight and bias Tensors) and `named`, the tensors that train, cut down to
the adapters (and the biases/norms the config asks for): the jitted step differentiates, clips and
updates only those. `backends/torch/lora.py` is the same for PyTorch.
"""

from __future__ import annotations

import numpy as np
from tinygrad import Tensor
from tinygrad.nn.state import get_state_dict

from backends.tinygrad.backend import TinygradModel
from backends.tinygrad.model import Linear, submodule
from core.convert.quantize import check_model_params
from core.model.config import GPTConfig, TrainConfig
from core.model.lora import ADAPTER_SUFFIXES, LoraConfig, check_adapters, merge, target_layers, trainable_shapes


class LoraLinear:
    """y = x @ W + b + scale * (x @ A) @ B, with W and b the frozen base Linear's own Tensors."""

    def __init__(self, base: Linear, rank: int, scale: float, device: str | tuple):
        self.weight, self.bias = base.weight, base.bias
        n_in, n_out = base.weight.shape
        self.lora_A = Tensor.empty(n_in, rank, device=device)  # values loaded later
        self.lora_B = Tensor.empty(rank, n_out, device=device)
        self.scale = scale

    def __call__(self, x: Tensor) -> Tensor:
        # The weight is detached: the base is frozen, so no gradient is built for it.
        return x.linear(self.weight.detach(), self.bias) + (x @ self.lora_A) @ self.lora_B * self.scale


class LoraTinygradModel(TinygradModel):
    lora: LoraConfig | None = None  # set once the adapters exist (TinygradModel.__init__ loads the base before)

    def __init__(self, config: GPTConfig, params: dict[str, np.ndarray], adapters: dict[str, np.ndarray],
                 lora: LoraConfig, device: str | tuple, train: TrainConfig):
        super().__init__(config, params, device, train)  # the plain model with the base weights
        check_adapters(config, lora, adapters)
        self._check_trainable()  # float32 only, no int8 base
        for layer in target_layers(config, lora):
            parent, child = layer.rsplit(".", 1)
            setattr(submodule(self.net, parent), child, LoraLinear(submodule(self.net, layer), lora.rank,
                                                                   lora.scale, device))
        trains = set(trainable_shapes(config, lora))
        every = get_state_dict(self.net)
        self.base = {n: t for n, t in every.items() if not n.endswith(ADAPTER_SUFFIXES)}  # spec names
        self.named = {n: t for n, t in every.items() if n in trains}  # what trains
        self.lora = lora
        self.load_adapters(adapters)
        self.optimizer = self._make_optimizer()  # AdamW over the adapters only (before the step is captured)
        # The biases/norms that train are the optimizer's Tensors now: the base's names point at them too.
        self.base = {n: self.named.get(n, t) for n, t in self.base.items()}

    def adapters(self) -> dict[str, np.ndarray]:
        """What trains (adapters, and biases/norms if asked) as float32 numpy, by name."""
        return {name: t.numpy().copy() for name, t in self.named.items()}

    def load_adapters(self, adapters: dict[str, np.ndarray]) -> None:
        check_adapters(self.config, self.lora, adapters)
        for name, t in self.named.items():  # assign keeps each buffer, so jitted kernels see the new values
            t.assign(Tensor(np.asarray(adapters[name], dtype=np.float32), device=self.device))
        Tensor.realize(*self.named.values())

    def params(self) -> dict[str, np.ndarray]:
        """The adapted model as plain parameters: adapters merged into their weights (core.model.lora.merge)."""
        if self.lora is None:
            return super().params()
        base = {name: t.numpy().copy() for name, t in self.base.items()}
        return merge(base, self.adapters(), self.lora)

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Overwrite the base weights (plain names); the adapters stay."""
        if self.lora is None:
            return super().load_params(params)
        check_model_params(self.config, params)
        for name, t in self.base.items():
            t.assign(Tensor(np.asarray(params[name], dtype=np.float32), device=self.device).cast(t.dtype))
        Tensor.realize(*self.base.values())
