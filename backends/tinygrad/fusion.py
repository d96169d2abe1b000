"""Where tinygrad's kernel fusion is slow on a CPU, and the two tools that fix it: kernel boundaries and
transposed copies.

tinygrad fuses elementwise work into the kernel that reads it, and takes every gradient from the
expression that made a value. Both are right in general and slow in a few places of a GPT on a CPU:
a matmul that reads an activation computed inside it recomputes it for every output; a gradient that
reads a matrix across its rows makes a dot-product kernel (gemm.py's slower form). `stored` puts a
boundary in (forward, and with `gradient` backward too); `with_transposed_input_gradient` gives an
input gradient a transposed copy to read. Both leave every value as it was.

`GPT_TINYGRAD_FAST=0` in the environment (or `FAST = False` here before a model is built) turns these
and the other speed choices of model.py and attention.py off, leaving tinygrad's plain code.
"""

from __future__ import annotations

import os

from tinygrad import Tensor

FAST = os.environ.get("GPT_TINYGRAD_FAST", "1") != "0"


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
    side; attention.py reads the values of weights @ values this way too). The weight gradient still comes from `y`;
    `z - z.detach()` is exactly zero and folded away, so the forward pass computes nothing more: z only
    carries the input gradient.
    """
    y = x.detach().linear(weight, bias)
    z = x @ weight.detach().transpose(-2, -1).contiguous().transpose(-2, -1)  # (.., in, out), stored (.., out, in)
    return y + (z - z.detach())
