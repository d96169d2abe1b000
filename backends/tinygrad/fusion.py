"""Where tinygrad's kernel fusion is slow on a CPU, and the two tools that fix it: kernel boundaries and
transposed copies.

tinygrad fuses elementwise work into the kernel that reads it, and takes every gradient from the
expression that made a value. Both are right in general and slow in a few places of a GPT on a CPU:
a matmul that reads an activation computed inside it recomputes it for every output; a gradient that
reads a matrix across its rows makes a dot-product kernel (gemm.py's slower form). `stored` puts a
boundary in (forward, and with `gradient` backward too); `with_transposed_input_gradient` gives an
input gradient a transposed copy to read. Both leave every value as it was.

`with_transposed_input_gradient` also sums a large layer's weight gradient over chunks of positions.

`GPT_TINYGRAD_FAST=0` in the environment (or `FAST = False` here before a model is built) turns these
and the other speed choices of model.py and attention.py off, leaving tinygrad's plain code.
"""

from __future__ import annotations

import os

from tinygrad import Tensor
from tinygrad.helpers import prod

FAST = os.environ.get("GPT_TINYGRAD_FAST", "1") != "0"
# A weight gradient x.T @ dy of at least CHUNKED_FROM FLOPs is summed GRADIENT_CHUNK positions at a time.
GRADIENT_CHUNK = 128
CHUNKED_FROM = 40_000_000


def stored(x: Tensor, gradient: bool = False) -> Tensor:
    """A kernel boundary: `x` is computed once and stored (with `gradient`, its gradient too, in the
    backward pass) instead of being fused into each consumer. tinygrad fuses elementwise work such as
    gelu, layernorm or softmax into the matmul that reads it, which then recomputes it for every output
    element; on a CPU the stored version trains about 1.7x faster. Does nothing unless FAST."""
    if not FAST:
        return x
    return x.contiguous().contiguous_backward() if gradient else x.contiguous()


def with_transposed_input_gradient(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight (+ bias), whose input gradient dy @ weight.T reads a transposed copy of the weight.

    Read as stored, weight (.., in, out) is read along its rows by dy @ weight.T, the sum contiguous in
    both operands (a dot product per output, gemm.py's slower form); a transposed copy (.., out, in), a
    few hundred kilobytes a step, lets that sum run over its rows the way x @ weight does (for the linear
    layers, 12% faster training steps at nanoGPT's baby size, 5% at the reference size, measured side by
    side; attention.py reads the values of weights @ values this way too). The weight gradient still
    comes from `y` (for a large layer from `_weight_gradient_in_chunks`); `z - z.detach()` is exactly
    zero and folded away, so the forward pass computes nothing more: z only carries the input gradient.
    """
    rows = prod(x.shape[:-1])
    chunked = _chunked(rows, weight)
    y = x.detach().linear(weight.detach() if chunked else weight, bias)
    z = x @ weight.detach().transpose(-2, -1).contiguous().transpose(-2, -1)  # (.., in, out), stored (.., out, in)
    out = y + (z - z.detach())
    return out + _weight_gradient_in_chunks(x, weight, rows) if chunked else out


def _chunked(rows, weight: Tensor) -> bool:
    """Whether the weight gradient of x @ weight over `rows` positions is summed in chunks."""
    if not (isinstance(rows, int) and weight.ndim == 2 and rows % GRADIENT_CHUNK == 0 and rows > GRADIENT_CHUNK):
        return False
    return 2 * rows * prod(weight.shape) >= CHUNKED_FROM


def _weight_gradient_in_chunks(x: Tensor, weight: Tensor, rows: int) -> Tensor:
    """Zero, carrying the weight gradient x.T @ dy as the sum of partial products over GRADIENT_CHUNK
    positions each, one kernel for all the partial products and one to add them up.

    Summed over every position at once, each 16 x 4 tile of the gradient reads two strips as long as
    the batch: at nanoGPT's baby size (768 positions) those of c_attn's gradient together are 1.5 MB,
    more than this CPU's 512 KB of L2 cache a core, so (as we read it) the tiles keep fetching them
    from L3. A chunk of 128 positions reads 260 KB. The weight seen as k copies (weight.expand) gives
    this from autodiff itself: the gradient of each copy is one chunk's product, and
    `contiguous_backward` stores them before their sum. Side by side in one process: c_attn's gradient
    11.3 -> 5.0 ms at the baby size, its training step 0.94-0.99x, the reference size's 0.81x; the README's
    default run (C = 64, below CHUNKED_FROM) gained nothing and would compile a kernel more per layer.
    """
    k = rows // GRADIENT_CHUNK
    chunks = x.detach().reshape(k, GRADIENT_CHUNK, x.shape[-1])  # (B, T, in) -> (k, chunk, in)
    partial = chunks @ weight.expand(k, *weight.shape).contiguous_backward()  # (k, chunk, out)
    s = partial.reshape(*x.shape[:-1], weight.shape[-1])
    return s - s.detach()
