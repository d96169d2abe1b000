"""int8 weight-only quantization: a quarter of the bytes, computed once here, undone in each backend's matmul.

Each quantized matrix W becomes an int8 matrix Q and one float32 scale per output channel:

    scale[c] = max |W[:, c]| / 127          Q = round(W / scale), in [-127, 127]        W ~ Q * scale

Symmetric (no zero point) and per output channel, so a channel with small weights is not crushed by
another's outlier, and the error of every weight is at most scale[c] / 2. Activations stay float:
only the storage shrinks, and a backend computes `(x @ Q) * scale + b`, which equals `x @ (Q * scale) + b`
because the scale is constant along the summed axis.

Which matrices, and which axis is the output channel:

    h.{i}.attn.c_attn / c_proj, h.{i}.mlp.c_fc / c_proj   (in, out)  one scale per column (out,)
    wte, lm_head                                          (V, C)     one scale per row (V,): a row is both
                                                                     a looked-up vector and one logit's weights
    wpe, LayerNorm gains, biases                          stay float32 (small, and added straight to the stream)

The token embedding is quantized by default because at this project's sizes it is a large part of
the model (8192 x 512 of the `small` preset's 23M numbers): keeping it float32 leaves the file at
about 40% of float32 instead of about 25%. `embeddings=False` keeps it (and `lm_head`) float32.

Keys: a quantized `X.weight` is stored as `X.weight_int8` (int8, the shape of `X.weight`) and
`X.weight_scale` (float32, one per output channel); every other parameter keeps its name. A
checkpoint of such params has `"quantization": "int8"` in its meta.json.
"""

from __future__ import annotations

import numpy as np

from core.model.config import GPTConfig
from core.model.params import check_params, param_shapes

INT8, SCALE = ".weight_int8", ".weight_scale"  # suffixes replacing ".weight" of a quantized matrix
LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
EMBEDDINGS = ("wte", "lm_head")  # quantized per row; wpe stays float32
QMAX = 127  # symmetric range [-127, 127]: -128 is left out so that Q and -Q are both representable


def channel_axis(module: str) -> int:
    """The axis of a quantized weight that indexes output channels: rows for embeddings, columns for Linear."""
    return 0 if module in EMBEDDINGS else 1


def quantizable(name: str, embeddings: bool = True) -> bool:
    """Whether parameter `name` is quantized: Linear weights always, wte and lm_head when `embeddings`."""
    module = name.removesuffix(".weight")
    if module == name:
        return False
    return (module.startswith("h.") and module.endswith(LINEARS)) or (embeddings and module in EMBEDDINGS)


def quantize_weight(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 Q and float32 scales (one per index of `axis`) with |Q * scale - weight| <= scale / 2."""
    w = np.asarray(weight, dtype=np.float64)
    reduce = 1 - axis  # the other axis of the 2-D matrix
    amax = np.abs(w).max(axis=reduce)
    scale = (amax / QMAX).astype(np.float32)
    scale[scale == 0] = 1.0  # an all-zero channel: any scale works, Q is 0
    shaped = np.expand_dims(scale.astype(np.float64), reduce)  # broadcast along the channel's weights
    q = np.clip(np.rint(w / shaped), -QMAX, QMAX).astype(np.int8)
    return q, scale


def dequantize_weight(q: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """float32 Q * scale, the scale broadcast along its channel axis."""
    return q.astype(np.float32) * np.expand_dims(np.asarray(scale, dtype=np.float32), 1 - axis)


def is_quantized(params: dict[str, np.ndarray]) -> bool:
    return any(name.endswith(INT8) for name in params)


def quantized_modules(params: dict[str, np.ndarray]) -> list[str]:
    """Names of the modules whose weight is stored as int8 (`h.0.attn.c_attn`, `wte`, ...), in order."""
    return [name.removesuffix(INT8) for name in params if name.endswith(INT8)]


def quantize_params(params: dict[str, np.ndarray], embeddings: bool = True) -> dict[str, np.ndarray]:
    """A copy of float `params` with the quantizable weights as `.weight_int8` + `.weight_scale` pairs."""
    if is_quantized(params):
        raise ValueError("these parameters are already quantized: quantize the float32 checkpoint instead")
    out: dict[str, np.ndarray] = {}
    for name, value in params.items():
        if quantizable(name, embeddings):
            module = name.removesuffix(".weight")
            out[module + INT8], out[module + SCALE] = quantize_weight(value, channel_axis(module))
        else:
            out[name] = np.asarray(value, dtype=np.float32)
    return out


def dequantize_params(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float32 params with `core.model.params` names: each int8 pair becomes `Q * scale`. Float params pass through."""
    out: dict[str, np.ndarray] = {}
    for name, value in params.items():
        if name.endswith(SCALE):
            continue
        if name.endswith(INT8):
            module = name.removesuffix(INT8)
            out[module + ".weight"] = dequantize_weight(value, params[module + SCALE], channel_axis(module))
        else:
            out[name] = np.asarray(value, dtype=np.float32)
    return out


def check_model_params(config: GPTConfig, params: dict[str, np.ndarray]) -> None:
    """`core.model.params.check_params` for float or int8 params: names, shapes and the int8 pairs' dtypes."""
    if not is_quantized(params):
        return check_params(config, params)
    shapes = param_shapes(config)
    for module in quantized_modules(params):
        weight = module + ".weight"
        if weight not in shapes or not quantizable(weight):
            raise ValueError(f"{module} cannot be int8 (only Linear weights, wte and lm_head can be)")
        q, scale = params[module + INT8], params.get(module + SCALE)
        if scale is None:
            raise ValueError(f"{module}{INT8} has no {module}{SCALE}: the checkpoint is incomplete")
        n_channels = shapes[weight][channel_axis(module)]
        if q.dtype != np.int8 or tuple(q.shape) != shapes[weight] or tuple(scale.shape) != (n_channels,):
            raise ValueError(
                f"{module}: int8 weight {q.dtype} {tuple(q.shape)} with scale {tuple(scale.shape)} does not match "
                f"the config ({shapes[weight]}, {n_channels} scales)"
            )
    orphans = [n for n in params if n.endswith(SCALE) and n.removesuffix(SCALE) + INT8 not in params]
    if orphans:
        raise ValueError(f"scales without int8 weights: {orphans[:5]}")
    # Every other name and shape as for float params (shapes only: the int8 pairs were checked above).
    skeleton = {n: v for n, v in params.items() if not n.endswith((INT8, SCALE))}
    for module in quantized_modules(params):
        skeleton[module + ".weight"] = params[module + INT8]
    check_params(config, skeleton)

