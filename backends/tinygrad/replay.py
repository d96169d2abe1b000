"""Replay a captured TinyJit on the CPU as a flat list of C calls: the host work of a step, cut down.

A jitted tinygrad step still costs Python work for every kernel it replays: pattern matching the
call, resolving its buffers, working out launch sizes, converting each argument to ctypes. A
decode step is about 80 small kernels, so that work (about 30 us each here) took longer than the
kernels themselves (profile: 2.6 ms of host time around 1 ms of kernels at batch 1).

Once the JIT has captured, every buffer a CPU step touches is fixed (the JIT's own arena, the
weights, and inputs that the caller keeps in the same buffers), so `Replay` resolves each kernel
once into (function, ctypes arguments) and later calls just call them in order. Symbolic
arguments (a decode step's position) are filled in per call. Kernels split into thread parts run
them at once when `threads` is enabled. Any call that is not a CPU kernel (a copy) goes through
tinygrad as before. Inputs in new buffers, several devices or another device: plain TinyJit.
`GPT_TINYGRAD_REPLAY=0` turns it off.
"""

from __future__ import annotations

import ctypes
import os

from tinygrad import TinyJit
from tinygrad.engine.jit import _prepare_jit_inputs
from tinygrad.engine.realize import ExecContext, get_runtime, pm_exec, resolve_params, unwrap_multi
from tinygrad.uop.ops import Ops

from backends.tinygrad import threads

ENABLED = os.environ.get("GPT_TINYGRAD_REPLAY", "1") != "0"
through_tinygrad = False  # True: every call goes through TinyJit (kernel_timer times kernels so)


class _Kernel:
    """One resolved kernel launch: its C function, fixed arguments, and where its variables go."""

    def __init__(self, ast, bufs: list, device: str):
        self.fxn, self.info = get_runtime(device, ast).fxn, ast.arg
        self.args = [ctypes.c_uint64(b.get_buf(device).va_addr) for b in bufs]
        self.core = self.info.runtimevars.get("core_id")
        self.symbolic = any(v.expr != "core_id" for v in self.info.vars)
        ops = ast.src[0].arg.estimates.ops if ast.src[0].arg.estimates is not None else 0
        self.big = isinstance(ops, int) and ops >= threads.MIN_PARALLEL_FLOPS  # symbolic: a decode step's attention
        self.parts, self.vals = self._launch({}) if not self.symbolic else (1, [])

    def _launch(self, var_vals: dict[str, int]) -> tuple[int, list]:
        (parts, *_), _ = self.info.launch_dims(var_vals)
        return int(parts), [ctypes.c_uint64(v or 0) for v in self.info.vals(var_vals)]

    def __call__(self, var_vals: dict[str, int]) -> None:
        parts, vals = self._launch(var_vals) if self.symbolic else (self.parts, self.vals)
        args = self.args + vals
        if self.core is None:
            self.fxn(*args)
            return
        slot = len(self.args) + self.core
        if threads.enabled() and parts > 1 and self.big:
            threads.run_parts(self.fxn, args, slot, parts)
            return
        for part in range(parts):
            args[slot] = ctypes.c_uint64(part)
            self.fxn(*args)


class Replay:
    """TinyJit(fn), whose calls after the capture run as resolved C calls (on a single CPU device)."""

    def __init__(self, fn, device):
        self.jit, self.plan, self.inputs = TinyJit(fn), None, None
        self.usable = ENABLED and isinstance(device, str) and device.split(":")[0] == "CPU"

    def __call__(self, *args, **kwargs):
        if through_tinygrad:
            return self.jit(*args, **kwargs)
        if self.plan is None:
            out = self.jit(*args, **kwargs)
            if self.usable and self.jit.captured is not None:
                self._build(args, kwargs)
            return out
        inputs, var_vals, _, _ = _prepare_jit_inputs(args, kwargs)
        if inputs != self.inputs:  # new input buffers: the resolved addresses would be stale
            self.plan, self.usable = None, False
            return self.jit(*args, **kwargs)
        for step in self.plan:
            step(var_vals) if isinstance(step, _Kernel) else step()
        return self.jit.captured.ret

    def _build(self, args, kwargs) -> None:
        inputs, var_vals, _, _ = _prepare_jit_inputs(args, kwargs)
        captured = self.jit.captured
        if any(u in captured._written_uops for u in inputs):  # the JIT copies such inputs first: leave it to it
            self.usable = False
            return
        plan: list = []
        for call in captured.linear.src:
            ast = call.src[0]
            if ast.op is not Ops.PROGRAM:
                plan.append(lambda call=call: pm_exec.rewrite(call, ExecContext({}, tuple(inputs), False, True)))
                continue
            resolved = resolve_params(call, tuple(inputs))
            lanes = list(unwrap_multi(call, [resolved[i] for i in ast.arg.globals]))
            device = call.src[1].device
            if len(lanes) != 1 or lanes[0][1] or not isinstance(device, str):
                self.usable = False
                return
            plan.append(_Kernel(ast, [b.ensure_allocated() for b in lanes[0][0]], device))
        self.plan, self.inputs = plan, inputs
