"""The tinygrad backend: numpy in, numpy out, around the GPT of `model.py`.

This is where arrays cross between the core and tinygrad, and where the training step lives: AdamW
(`optimizer.py`) in two parameter groups (decay on 2-D weights only), clipping by global gradient
norm, and gradient accumulation — the same semantics as `backends/torch/backend.py`. The training
step, the forward pass of `logits`, prefill and the decode step each run under `TinyJit` (through
`replay.Replay`, which on a CPU replays the captured kernels as plain C calls), so after two calls
they replay captured kernels (set `JIT=0` to turn that off); their inputs are written into the same
buffers every call.
Python numbers that change between calls (learning rate, position) therefore enter as a realized
Tensor or a bound symbolic Variable, never as constants frozen at capture.
"""

from __future__ import annotations

import sys
from importlib.metadata import version

import numpy as np
from tinygrad import Context, Tensor, Variable, dtypes
from tinygrad.nn.state import get_state_dict

from backends.tinygrad import compile_workers, fusion, threads, tune, wide_loads
from backends.tinygrad.buffers import read, write
from backends.tinygrad.device import check_compiles, select_device
from backends.tinygrad.fusion import stored
from backends.tinygrad.model import GPT, KVCache, submodule
from backends.tinygrad.optimizer import AdamW
from backends.tinygrad.replay import Replay
from backends.tinygrad.slots import SlotServing
from core.convert.quantize import INT8, SCALE, check_model_params, dequantize_params, quantized_modules
from core.model.config import GPTConfig, TrainConfig
from core.model.interface import IGNORE_INDEX
from core.model.lora import LoraConfig
from core.model.params import check_causal


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean NLL of targets (N,) under logits (N, V), skipping IGNORE_INDEX.

    Written out because tinygrad's sparse_categorical_crossentropy, at its default ignore_index=-1,
    counts ignored positions in the mean's denominator."""
    keep = targets != IGNORE_INDEX
    log_probs = stored(logits.float(), gradient=True).log_softmax(-1)  # the softmax is computed once per pass
    picked = log_probs.gather(-1, keep.where(targets, 0).unsqueeze(-1)).squeeze(-1)  # (N,)
    return -(picked * keep).sum() / keep.sum().maximum(1)


class TinygradModel(SlotServing):
    def __init__(self, config: GPTConfig, params: dict[str, np.ndarray], device: str | tuple, train: TrainConfig):
        check_model_params(config, params)
        # Lower precision is for inference: weights, activations and KV cache in that dtype (training
        # would need float32 master weights and loss scaling, which this backend does not have).
        self.compute_dtype = getattr(dtypes, train.dtype)
        if train.dtype != "float32":
            check_compiles(train.dtype, device)
        self.config, self.device, self.train = config, device, train
        self.net = GPT(config, device)
        self.int8 = sorted(quantized_modules(params))  # modules holding int8 weights (core/convert/quantize.py), if any
        for module in self.int8:
            submodule(self.net, module).int8_()
        state = get_state_dict(self.net)
        self.named = {n: t for n, t in state.items() if not n.endswith((INT8, SCALE))}  # spec name -> Tensor
        self.int8_tensors = {n: t for n, t in state.items() if n.endswith((INT8, SCALE))}  # int8 weights, scales
        if self.compute_dtype != dtypes.float32:
            for name, t in state.items():  # the same tensors, held in the compute dtype (int8 weights stay)
                if not name.endswith(INT8):
                    module, attr = name.rsplit(".", 1)
                    held = Tensor.empty(*t.shape, dtype=self.compute_dtype, device=device)
                    setattr(submodule(self.net, module), attr, held)
            state = get_state_dict(self.net)
            self.named = {n: t for n, t in state.items() if not n.endswith((INT8, SCALE))}
            self.int8_tensors = {n: t for n, t in state.items() if n.endswith((INT8, SCALE))}
        self.load_params(params)
        self.optimizer = self._make_optimizer()
        # The last step's global gradient norm before clipping, written by the jitted step.
        self.grad_norm = Tensor([0.0], device=device).contiguous().realize()
        self._step_jit = Replay(self._step, device)
        self._batch: dict[tuple, tuple[Tensor, Tensor]] = {}  # batch shape -> the step's input buffers, reused
        self._announced: set[str] = set()
        self._forwards: dict[tuple, tuple[Tensor, Replay]] = {}  # input shape -> its buffer and jitted forward pass
        self.cache: KVCache | None = None

    def _make_optimizer(self) -> AdamW | None:
        """AdamW over `self.named` (what trains), the model holding its parameters from here on (on one
        device, views of the optimizer's flat buffers); None for a model that cannot train."""
        if not self._trainable():
            return None
        optimizer = AdamW(self.named, self.train)
        for name, param in optimizer.params.items():
            module, attr = name.rsplit(".", 1)
            setattr(submodule(self.net, module), attr, param)
        self.named = {n: optimizer.params[n] for n in self.named}
        return optimizer

    # ---- numpy <-> tinygrad
    def _tokens(self, tokens: np.ndarray, batch_axis: int | None = None) -> Tensor:
        """Token ids on the device. With several devices (a tuple) every tensor lives on all of them:
        weights and optimizer state replicated, and a training batch split along `batch_axis`."""
        tokens = np.asarray(tokens, dtype=np.int32)
        if not isinstance(self.device, tuple) or batch_axis is None:
            return Tensor(tokens, device=self.device)
        if tokens.shape[batch_axis] % len(self.device):
            raise ValueError(
                f"batch size {tokens.shape[batch_axis]} does not split evenly over {len(self.device)} devices: "
                f"use a multiple of {len(self.device)}"
            )
        return Tensor(tokens).shard(self.device, axis=batch_axis)

    def params(self) -> dict[str, np.ndarray]:
        values = {name: t.numpy().copy() for name, t in {**self.named, **self.int8_tensors}.items()}
        return dequantize_params(values)  # int8 weights come back as float32 Q * scale

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        check_model_params(self.config, params)
        if sorted(quantized_modules(params)) != self.int8:
            raise ValueError("these params are quantized differently from the model's: build a model for them")
        for name, t in self.named.items():  # assign keeps each buffer, so jitted kernels see the new values
            t.assign(Tensor(np.asarray(params[name], dtype=np.float32), device=self.device).cast(t.dtype))
        for name, t in self.int8_tensors.items():
            dtype = np.int8 if name.endswith(INT8) else np.float32
            t.assign(Tensor(np.asarray(params[name], dtype=dtype), device=self.device).cast(t.dtype))
        Tensor.realize(*self.named.values(), *self.int8_tensors.values())

    def _trainable(self) -> bool:
        return self.compute_dtype == dtypes.float32 and not self.int8

    def _check_trainable(self) -> None:
        if self.compute_dtype != dtypes.float32:
            raise NotImplementedError(
                f"training in {self.train.dtype} is not implemented in the tinygrad backend (it would need float32 "
                "master weights and loss scaling): train in float32; --dtype float16 serves generation"
            )
        if self.int8:
            raise NotImplementedError(
                "training an int8 model is not implemented in the tinygrad backend: train the float32 checkpoint, "
                "then quantize it"
            )

    # ---- forward passes
    def logits(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens)
        if isinstance(self.device, tuple):
            return self.net(self._tokens(tokens)).float().numpy()
        # One jitted forward pass per input shape (the last 8), its tokens written into the same buffer:
        # evaluation calls this for every validation batch, and scheduling it anew each time cost more
        # than running it.
        if tokens.shape not in self._forwards:
            if len(self._forwards) >= 8:
                self._forwards.pop(next(iter(self._forwards)))
            fed = Tensor.zeros(*tokens.shape, dtype=dtypes.int32, device=self.device).contiguous().realize()
            self._forwards[tokens.shape] = (fed, Replay(self._forward_step, self.device))
        fed, forward = self._forwards[tokens.shape]
        write(fed, tokens.astype(np.int32))
        return read(forward(fed))

    def _forward_step(self, tokens: Tensor) -> Tensor:
        return self.net(tokens).float().contiguous().realize()

    def _loss(self, tokens: Tensor, targets: Tensor) -> Tensor:
        logits = self.net(tokens)  # (B, T, V)
        return cross_entropy(logits.flatten(0, 1), targets.flatten())

    def loss(self, tokens: np.ndarray, targets: np.ndarray) -> float:
        return self._loss(self._tokens(tokens), self._tokens(targets)).item()

    def gradients(self, tokens: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        self._check_trainable()
        loss = self._loss(self._tokens(tokens), self._tokens(targets))
        grads = loss.gradient(*self.named.values())
        return {name: g.numpy().copy() for name, g in zip(self.named, grads)}

    # ---- training
    @Context(TRAINING=1)
    def _step(self, tokens: Tensor, targets: Tensor) -> Tensor:
        # The graph is lazy and realized once, so the A micro-batch losses are summed into one
        # backward pass: the same gradient as torch's A separate backward calls.
        A = tokens.shape[0]
        loss = sum(self._loss(tokens[a], targets[a]) for a in range(A)) / A
        # Gradients of what trains only (backward() would also compute them for frozen LoRA base weights),
        # each stored where the optimizer reads it.
        grads = self.optimizer.grads
        for name, g in zip(self.named, loss.gradient(*self.named.values())):
            grads[name].assign(g)
        # The loss and gradients are realized first, the optimizer's update after them (both captured by the
        # JIT). The update reads the gradients through the flat buffers they are views of, which tinygrad does
        # not see as the same memory, so this order is needed, not only fast: in one graph, tinygrad also
        # checked each of the update's assignments for a hazard by walking the whole backward graph behind
        # it (fix_store_hazard): the first step 9.5 -> 4.9 s on a warm kernel cache, 18.2 -> 15.9 s on a cold
        # one (baby GPT, scratch, with tinygrad's AdamW).
        Tensor.realize(loss, *grads.values())
        # Stored once: the clipping factor and the reported norm each read it.
        norm = sum((g ** 2).sum() for g in self.optimizer.grad_buffers()).sqrt().contiguous()
        scale = None
        if self.train.grad_clip > 0:
            # One kernel computes the factor and each update reads it: left lazy, the global norm was fused
            # into each update kernel and recomputed there.
            scale = (self.train.grad_clip / (norm + 1e-6)).minimum(1.0).contiguous()  # as torch's clip_grad_norm_
        self.grad_norm.assign(norm.reshape(1))
        return loss.realize(self.grad_norm, *self.optimizer.schedule_step(scale))

    def train_step(self, tokens: np.ndarray, targets: np.ndarray, lr: float) -> float:
        self._check_trainable()
        tokens, targets = np.asarray(tokens), np.asarray(targets)
        if tokens.ndim == 2:  # a single micro-batch
            tokens, targets = tokens[None], targets[None]
        inputs = self._batch_inputs(tokens, targets)
        self.optimizer.prepare(lr)  # the step's learning rate and bias corrections, written in place
        loss = self._step_jit(*inputs).item()
        self._announce("training")
        return loss

    def last_grad_norm(self) -> float:
        return float(read(self.grad_norm)[0])

    def _announce(self, kind: str) -> None:
        """Say once per kind of step, after its first call compiled its kernels, whether tuned ones were found."""
        if fusion.FAST and kind not in self._announced:
            self._announced.add(kind)
            print(f"{tune.summary()} ({kind})", file=sys.stderr, flush=True)  # stdout may be generated text

    def _batch_inputs(self, tokens: np.ndarray, targets: np.ndarray) -> tuple[Tensor, Tensor]:
        """The step's tokens and targets on the device. On one device they are written into the same two
        buffers every step (so `Replay` can keep its resolved kernels); sharded batches are new tensors."""
        if isinstance(self.device, tuple):
            return self._tokens(tokens, batch_axis=1), self._tokens(targets, batch_axis=1)
        if tokens.shape not in self._batch:
            self._batch[tokens.shape] = tuple(
                Tensor.zeros(*tokens.shape, dtype=dtypes.int32, device=self.device).contiguous().realize() for _ in "xy"
            )
        fed = self._batch[tokens.shape]
        write(fed[0], tokens.astype(np.int32))
        write(fed[1], targets.astype(np.int32))
        return fed

    def optimizer_state(self) -> dict[str, np.ndarray]:
        self._check_trainable()
        return {"step": np.array([self.optimizer.step], dtype=np.int64), **self.optimizer.state()}

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        self._check_trainable()
        self.optimizer.load_state(state, step=int(np.asarray(state["step"]).reshape(-1)[0]))

    # ---- inference with a KV cache
    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        check_causal(self.config)
        tokens = np.asarray(tokens)
        B, T = tokens.shape
        if self.cache is None or self.cache.k[0].shape[0] != B:
            # Keep one cache per batch size: the jitted decode step captured these very buffers, and
            # reads each step's tokens from `_fed`, which `decode` overwrites in place.
            self.cache = KVCache(self.config, B, self.device, self.compute_dtype)
            self._fed = Tensor.zeros(B, 1, dtype=dtypes.int32, device=self.device).contiguous().realize()
            self._decode_jit = Replay(self._decode_step, self.device)
            self._prefills: dict[int, tuple[Tensor, Replay]] = {}  # prompt length -> its input and jitted step
        # A jitted prefill per prompt length (the last 8): generating past block_size prefills a full window
        # every step, and scheduling one unjitted costs far more than running it.
        if T not in self._prefills:
            if len(self._prefills) >= 8:
                self._prefills.pop(next(iter(self._prefills)))
            fed = Tensor.zeros(B, T, dtype=dtypes.int32, device=self.device).contiguous().realize()
            self._prefills[T] = (fed, Replay(self._prefill_step, self.device))
        fed, step = self._prefills[T]
        write(fed, tokens.astype(np.int32))
        logits = step(fed)
        self.cache.pos = T
        self._announce("generation")
        return read(logits)

    def _prefill_step(self, tokens: Tensor) -> Tensor:
        return self.net(tokens, self.cache, 0)[:, -1].contiguous().realize()

    def _decode_step(self, start: Variable) -> Tensor:
        return self.net(self._fed, self.cache, start)[:, -1].contiguous().realize()

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        if self.cache is None:
            raise RuntimeError("decode() needs a cache: call prefill() first")
        if self.cache.pos >= self.config.block_size:
            raise ValueError(f"the cache is full at block_size={self.config.block_size}: prefill a shorter context")
        start = Variable("start", 0, self.config.block_size - 1).bind(self.cache.pos)
        write(self._fed, np.asarray(tokens, dtype=np.int32).reshape(-1, 1))
        logits = self._decode_jit(start)
        self.cache.pos += 1
        return read(logits)

    def attention_maps(self, tokens: np.ndarray) -> list[np.ndarray]:
        return [m.float().numpy() for m in self.net.attention_maps(self._tokens(tokens))]


class TinygradBackend:
    name = "tinygrad"
    rank, world_size = 0, 1  # one process; see --devices for several devices in it

    def __init__(self, device: str | None = None):
        self.device = select_device(device)  # a tuple for several devices (one process, sharded batches)
        if fusion.FAST and threads.ENABLED:  # tinygrad runs a CPU kernel's thread parts in turn; run them at once
            threads.enable()
        if fusion.FAST:  # compiles look for kernels tuned by `tune` in tinygrad's disk cache
            tune.install()
            wide_loads.install()
            compile_workers.start()  # its workers import tinygrad while the first step is built

    def any_rank(self, flag: bool) -> bool:
        return flag

    def build(
        self, config: GPTConfig, params: dict[str, np.ndarray], train: TrainConfig | None = None
    ) -> TinygradModel:
        return TinygradModel(config, params, self.device, train or TrainConfig())

    def build_lora(self, config: GPTConfig, params: dict[str, np.ndarray], adapters: dict[str, np.ndarray],
                   lora: LoraConfig, train: TrainConfig | None = None) -> TinygradModel:
        from backends.tinygrad.lora import LoraTinygradModel

        return LoraTinygradModel(config, params, adapters, lora, self.device, train or TrainConfig())

    def manual_seed(self, seed: int) -> None:
        Tensor.manual_seed(seed)

    def versions(self) -> dict[str, str]:
        return {"tinygrad": version("tinygrad"), "numpy": np.__version__}
