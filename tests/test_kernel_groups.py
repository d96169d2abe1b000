"""The profile's kernel grouping (benchmarks/kernel_groups.py) on kernels with a GPT's known signatures."""

from __future__ import annotations

from benchmarks.kernel_groups import Kernel, classify, summarize
from core.model.config import GPTConfig

CONFIG = GPTConfig(vocab_size=100, block_size=8, n_layer=1, n_head=2, n_embd=32)  # scores B*nh*T*T != N*C
B, T, C, V = 3, 8, 32, 100
N = B * T


def kernel(flops: int, out: int, *others: int, seconds: float = 1e-3) -> Kernel:
    return Kernel("k", flops, out, (out, *others), seconds)


def test_matmuls_are_told_apart_by_what_they_write_and_by_order():
    H = CONFIG.mlp_hidden
    kernels = [
        kernel(2 * N * C * 3 * C, N * 3 * C, N * C, C * 3 * C),  # c_attn forward
        kernel(2 * N * C * C, N * C, N * C, C * C),  # attn.c_proj forward: same writes as its input gradient
        kernel(int(2.2 * N * C * V), N * V, N * C, V * C),  # head forward (a little fused work on top)
        kernel(5 * N * V, N * V, N),  # cross-entropy gradient
        kernel(2 * N * C * V, N * C, N * V, V * C),  # head input gradient: the backward pass starts
        kernel(2 * N * C * C, N * C, N * C, C * C),  # attn.c_proj input gradient
        kernel(2 * N * H * C, H * C, N * H, N * C),  # mlp.c_proj weight gradient
        kernel(10 * C * C, C * C, C * C, C * C),  # AdamW on a (C, C) weight
        kernel(3 * N * C, N * C, N * C),  # an elementwise kernel
    ]
    assert classify(kernels, CONFIG, B, T, T) == [
        "matmuls forward",
        "matmuls forward",
        "LM head forward",
        "softmax and cross-entropy",
        "LM head gradients",
        "matmuls input gradients",
        "matmuls weight gradients",
        "AdamW and clipping",
        "LayerNorm, GELU, residuals, biases",
    ]


def test_attention_and_summary():
    nh = CONFIG.n_head
    kernels = [kernel(2 * B * nh * T * T * CONFIG.head_size, B * nh * T * T, N * C), kernel(N * C, N * C, N * C)]
    groups = classify(kernels, CONFIG, B, T, T)
    assert groups[0] == "attention"
    rows = summarize(kernels, groups)
    assert sum(r["kernels"] for r in rows) == 2 and abs(sum(r["share"] for r in rows) - 1.0) < 1e-3


def test_weight_gradients_in_chunks_are_weight_gradients(monkeypatch):
    """A weight gradient summed over chunks of positions (backends/tinygrad/fusion.py): the kernel of the
    partial products and the one adding them up both count as weight gradients, not forward or AdamW."""
    from backends.tinygrad import fusion

    monkeypatch.setattr(fusion, "GRADIENT_CHUNK", 8)  # N = 24 positions: 3 chunks
    H, k = CONFIG.mlp_hidden, 3
    kernels = [
        kernel(2 * N * C * V, N * C, N * V, V * C),  # head input gradient: the backward pass starts
        kernel(2 * N * H * C, k * H * C, N * H, N * C),  # mlp.c_proj's partial weight gradients
        kernel(k * H * C, H * C, k * H * C),  # their sum
        kernel(10 * H * C, H * C, H * C, H * C),  # AdamW on that weight
    ]
    assert classify(kernels, CONFIG, B, T, T) == [
        "LM head gradients",
        "matmuls weight gradients",
        "matmuls weight gradients",
        "AdamW and clipping",
    ]
