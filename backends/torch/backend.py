"""The torch backend: numpy in, numpy out, around the GPT of `model.py`.

This is where arrays cross between the core and PyTorch, and where the optimizer lives: AdamW with
two parameter groups (decay on 2-D weights only), clipping by global gradient norm, and gradient
accumulation. `backends/tinygrad/backend.py` implements the same class for tinygrad.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from backends.torch import distributed, slots
from backends.torch.device import select_device
from backends.torch.model import GPT, KVCache
from core.convert.quantize import INT8, SCALE, check_model_params, dequantize_params, quantized_modules
from core.model.config import GPTConfig, TrainConfig
from core.model.interface import IGNORE_INDEX
from core.model.lora import LoraConfig
from core.model.params import check_causal, check_servable, decays


class TorchModel:
    def __init__(self, config: GPTConfig, params: dict[str, np.ndarray], device: str, train: TrainConfig):
        check_model_params(config, params)
        self.config, self.device, self.train = config, torch.device(device), train
        self.net = GPT(config).to(self.device)
        # Under torchrun, training runs through DDP (gradients averaged across processes during
        # backward); evaluation and generation use the plain module on each process.
        data_parallel = distributed.world_from_env()[2] > 1
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.train_net = torch.nn.parallel.DistributedDataParallel(self.net, device_ids) if data_parallel else self.net
        self.int8 = sorted(quantized_modules(params))  # modules holding int8 weights (core/convert/quantize.py), if any
        for module in self.int8:
            self.net.get_submodule(module).int8_()
        self.named = dict(self.net.named_parameters())  # spec name -> Parameter (tied weights once)
        self.load_params(params)
        self.optimizer = self._make_optimizer()
        self._grad_norm = torch.zeros(())  # the last step's global gradient norm before clipping
        self.cache: KVCache | None = None
        # Lower precision runs the forward pass under autocast; weights and AdamW stay float32.
        dtype = getattr(torch, train.dtype)
        if dtype != torch.float32 and not _supports(self.device, dtype):
            raise ValueError(f"dtype {train.dtype} is not supported by torch on {device}: use float32")
        self.autocast = torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32)
        self.compute_dtype = dtype  # also the KV cache's: keys and values come out of autocast matmuls
        # float16 gradients underflow without loss scaling (bfloat16 has float32's range and needs none).
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)

    def _make_optimizer(self) -> torch.optim.AdamW:
        """AdamW over `self.named` (what trains), weight decay on matrices only."""
        train = self.train
        groups = [
            {"params": [p for n, p in self.named.items() if decays(n, p.shape)], "weight_decay": train.weight_decay},
            {"params": [p for n, p in self.named.items() if not decays(n, p.shape)], "weight_decay": 0.0},
        ]
        # fused=True: one kernel updates every parameter (on a CPU 4x faster than foreach, itself ahead of
        # the per-parameter loop that is the default there).
        return torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2), eps=train.eps, fused=True)

    # ---- numpy <-> torch
    def _tokens(self, tokens: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(tokens, dtype=np.int64)).to(self.device)

    def params(self) -> dict[str, np.ndarray]:
        values = {name: p.detach().cpu().numpy().copy() for name, p in self.named.items()}
        values.update({n: b.cpu().numpy() for n, b in self.net.named_buffers() if n.endswith((INT8, SCALE))})
        return dequantize_params(values)  # int8 weights come back as float32 Q * scale

    @torch.no_grad()
    def load_params(self, params: dict[str, np.ndarray]) -> None:
        check_model_params(self.config, params)
        if sorted(quantized_modules(params)) != self.int8:
            raise ValueError("these params are quantized differently from the model's: build a model for them")
        for name, p in self.named.items():
            p.copy_(torch.from_numpy(np.asarray(params[name], dtype=np.float32)))
        for module in self.int8:
            m = self.net.get_submodule(module)
            m.weight_int8.copy_(torch.from_numpy(np.asarray(params[module + INT8], dtype=np.int8)))
            m.weight_scale.copy_(torch.from_numpy(np.asarray(params[module + SCALE], dtype=np.float32)))

    def _check_trainable(self) -> None:
        if self.int8:
            raise NotImplementedError(
                "training an int8 model is not implemented in the torch backend: train the float32 checkpoint, "
                "then quantize it"
            )

    # ---- forward passes
    @torch.no_grad()
    def logits(self, tokens: np.ndarray) -> np.ndarray:
        self.net.eval()
        with self.autocast:
            return self.net(self._tokens(tokens)).float().cpu().numpy()

    def _loss(self, tokens: torch.Tensor, targets: torch.Tensor, net: torch.nn.Module | None = None) -> torch.Tensor:
        with self.autocast:
            logits = (net or self.net)(tokens)  # (B, T, V)
        # Summed, then divided by the kept count (at least 1): a batch with every target ignored gives
        # 0, not the 0/0 = nan that reduction="mean" gives.
        targets = targets.flatten()
        total = F.cross_entropy(logits.flatten(0, 1).float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (targets != IGNORE_INDEX).sum().clamp(min=1)

    @torch.no_grad()
    def loss(self, tokens: np.ndarray, targets: np.ndarray) -> float:
        self.net.eval()
        return self._loss(self._tokens(tokens), self._tokens(targets)).item()

    def gradients(self, tokens: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        self._check_trainable()
        self.net.eval()
        self.net.zero_grad(set_to_none=True)
        self._loss(self._tokens(tokens), self._tokens(targets)).backward()
        grads = {name: p.grad.cpu().numpy().copy() for name, p in self.named.items()}
        self.net.zero_grad(set_to_none=True)
        return grads

    # ---- training
    def train_step(self, tokens: np.ndarray, targets: np.ndarray, lr: float) -> float:
        self._check_trainable()
        tokens, targets = self._tokens(tokens), self._tokens(targets)
        if tokens.ndim == 2:  # a single micro-batch
            tokens, targets = tokens[None], targets[None]
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(zip(tokens, targets)):  # (A, B, T): accumulate over A micro-batches
            last = i == len(tokens) - 1
            # DDP averages gradients across processes on the last micro-batch only.
            with contextlib.nullcontext() if last or self.train_net is self.net else self.train_net.no_sync():
                loss = self._loss(x, y, self.train_net) / len(tokens)
                self.scaler.scale(loss).backward()
            total += loss.detach()
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        if self.train.grad_clip > 0:  # both return the global norm before clipping
            norm = torch.nn.utils.clip_grad_norm_(self.named.values(), self.train.grad_clip, foreach=True)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.named.values() if p.grad is not None])
        self._grad_norm = norm.detach()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return distributed.mean_over_ranks(total).item()

    def last_grad_norm(self) -> float:
        return float(self._grad_norm)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {"step": np.array([0], dtype=np.int64)}
        for name, p in self.named.items():
            s = self.optimizer.state.get(p)
            if s:
                state["step"] = np.array([int(s["step"])], dtype=np.int64)
            for key in ("exp_avg", "exp_avg_sq"):
                state[f"{key}.{name}"] = s[key].cpu().numpy().copy() if s else np.zeros(p.shape, np.float32)
        return state

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        step = int(np.asarray(state["step"]).reshape(-1)[0])
        for name, p in self.named.items():
            self.optimizer.state[p] = {
                "step": torch.tensor(float(step), device=self.device),  # fused AdamW keeps it on the device
                **{
                    key: torch.from_numpy(np.array(state[f"{key}.{name}"])).to(self.device)
                    for key in ("exp_avg", "exp_avg_sq")
                },
            }

    # ---- inference with a KV cache
    @torch.no_grad()
    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        check_causal(self.config)
        self.net.eval()
        tokens = self._tokens(tokens)
        self.cache = KVCache(self.config, tokens.shape[0], self.device, self.compute_dtype)
        with self.autocast:  # generation computes in --dtype too, not only the full forward passes
            logits = self.net(tokens, self.cache, start=0)[:, -1]
        self.cache.pos = tokens.shape[1]
        return logits.float().cpu().numpy()

    @torch.no_grad()
    def decode(self, tokens: np.ndarray) -> np.ndarray:
        if self.cache is None:
            raise RuntimeError("decode() needs a cache: call prefill() first")
        if self.cache.pos >= self.config.block_size:
            raise ValueError(f"the cache is full at block_size={self.config.block_size}: prefill a shorter context")
        with self.autocast:
            logits = self.net(self._tokens(tokens)[:, None], self.cache, start=self.cache.pos)[:, -1]
        self.cache.pos += 1
        return logits.float().cpu().numpy()

    @torch.no_grad()
    def attention_maps(self, tokens: np.ndarray) -> list[np.ndarray]:
        self.net.eval()
        return [m.float().cpu().numpy() for m in self.net.attention_maps(self._tokens(tokens))]

    # ---- serving: a cache of slots, one request each at its own position (backends/torch/slots.py)
    def slot_start(self, n_slots: int) -> None:
        check_servable(self.config)
        self.net.eval()
        self.slot_cache = slots.SlotCache(self.net, n_slots)

    def slot_prefill(self, slot: int, tokens: np.ndarray) -> np.ndarray:
        return slots.prefill(self.net, self.slot_cache, slot, self._tokens(tokens)).float().cpu().numpy()

    def slot_decode(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        logits = slots.decode(self.net, self.slot_cache, self._tokens(tokens), self._tokens(positions))
        return logits.float().cpu().numpy()


def _supports(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether autocast to `dtype` is available and sensible on `device`."""
    if device.type == "cuda":
        return dtype != torch.bfloat16 or torch.cuda.is_bf16_supported()
    return device.type == "cpu" and dtype == torch.bfloat16 or device.type == "mps" and dtype == torch.float16


class TorchBackend:
    name = "torch"

    def __init__(self, device: str | None = None):
        self.rank, local_rank, self.world_size = distributed.world_from_env()
        if self.world_size > 1 and device is None and torch.cuda.is_available():
            device = f"cuda:{local_rank}"  # one GPU per process
        self.device = select_device(device)
        if self.world_size > 1:
            distributed.init_process_group(self.device)

    def any_rank(self, flag: bool) -> bool:
        return distributed.any_rank(flag, self.device)

    def build(self, config: GPTConfig, params: dict[str, np.ndarray], train: TrainConfig | None = None) -> TorchModel:
        return TorchModel(config, params, self.device, train or TrainConfig())

    def build_lora(self, config: GPTConfig, params: dict[str, np.ndarray], adapters: dict[str, np.ndarray],
                   lora: LoraConfig, train: TrainConfig | None = None) -> TorchModel:
        from backends.torch.lora import LoraTorchModel

        return LoraTorchModel(config, params, adapters, lora, self.device, train or TrainConfig())

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__, "numpy": np.__version__}
