"""The slot cache of serving (`slot_start`, `slot_prefill`, `slot_decode`) on both backends.

Requests join free slots and leave in random interleavings (hypothesis); after every prefill and
every decode step each active slot's logits must match the numpy reference's full forward pass
over that slot's whole sequence. Config shapes are drawn for torch only, GPT-2's and Llama's options
alike (RoPE, grouped-query heads, RMSNorm, SwiGLU, as tests/test_architectures.py draws them):
tinygrad compiles every new shape, so it gets two configs (GPT-2's, and a Llama-style one with RoPE
and two query heads per key/value head) and random interleavings.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.model import reference
from core.model.config import GPTConfig
from core.model.params import init_params

TINYGRAD_CONFIG = GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=16)
TINYGRAD_LLAMA = GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=4, n_embd=32, n_kv_head=2,
                           position="rope", norm="rmsnorm", mlp="swiglu", bias=False)
SLOTS = 4
_models: dict = {}


def _model(backend, config: GPTConfig):
    """One model per (backend, config), weights scaled up so that logits differ clearly between tokens."""
    key = (backend.name, config)
    if key not in _models:
        params = {k: (v * 8 if v.ndim == 2 else v) for k, v in init_params(config, seed=3).items()}
        _models[key] = (backend.build(config, params), params)
    return _models[key]


def _expected(config: GPTConfig, params: dict, seq: list[int]) -> np.ndarray:
    return reference.logits(config, params, np.array([seq]))[0, -1]


def _run_program(model, params, config: GPTConfig, data) -> None:
    """Joins, leaves and decode steps in an order drawn by hypothesis, checked against the reference."""
    model.slot_start(SLOTS)
    seqs: dict[int, list[int]] = {}  # slot -> every token written into it so far
    tokens = st.integers(0, config.vocab_size - 1)
    for _ in range(data.draw(st.integers(4, 14), label="operations")):
        free = [s for s in range(SLOTS) if s not in seqs]
        op = data.draw(st.sampled_from(["join", "step", "step", "leave"]), label="op")
        if op == "join" and free:
            slot = data.draw(st.sampled_from(free), label="slot")
            prompt = data.draw(st.lists(tokens, min_size=1, max_size=config.block_size - 2), label="prompt")
            got = model.slot_prefill(slot, np.array(prompt))
            np.testing.assert_allclose(got, _expected(config, params, prompt), atol=2e-4, rtol=1e-4)
            seqs[slot] = prompt
        elif op == "leave" and seqs:
            seqs.pop(data.draw(st.sampled_from(sorted(seqs)), label="leaving"))
        elif op == "step" and seqs:
            seqs = {s: q for s, q in seqs.items() if len(q) < config.block_size}  # a full slot leaves
            if not seqs:
                continue
            rows = max(seqs) + 1  # slots 0..rows-1 run; free ones among them are fed (0, 0)
            fed = np.zeros(rows, dtype=np.int64)
            positions = np.zeros(rows, dtype=np.int64)
            for s, q in seqs.items():
                fed[s] = data.draw(tokens, label="token")
                positions[s] = len(q)
                q.append(int(fed[s]))
            got = model.slot_decode(fed, positions)
            assert got.shape == (rows, config.vocab_size)
            for s, q in seqs.items():
                np.testing.assert_allclose(got[s], _expected(config, params, q), atol=2e-4, rtol=1e-4)


@st.composite
def configs(draw) -> GPTConfig:
    """GPT-2's options and Llama's: positions learned or RoPE, 1 to n_head key/value heads, the norm, the MLP."""
    n_head = draw(st.sampled_from([1, 2, 4]))
    return GPTConfig(
        vocab_size=30, block_size=draw(st.integers(4, 24)), n_layer=draw(st.integers(1, 2)), n_head=n_head,
        n_embd=n_head * draw(st.sampled_from([4, 8])), tie_embeddings=draw(st.booleans()),
        position=draw(st.sampled_from(["learned", "rope"])), rope_theta=draw(st.sampled_from([10000.0, 500.0])),
        n_kv_head=draw(st.sampled_from([h for h in (0, 1, 2) if h == 0 or n_head % h == 0])),
        norm=draw(st.sampled_from(["layernorm", "rmsnorm"])), mlp=draw(st.sampled_from(["gelu", "swiglu"])),
        bias=draw(st.booleans()),
    )


@given(data=st.data(), config=configs())
def test_torch_slots_match_the_full_forward_pass(data, config):
    from backends import get_backend

    model, params = _model(get_backend("torch"), config)
    _run_program(model, params, config, data)


@pytest.mark.parametrize("config", [TINYGRAD_CONFIG, TINYGRAD_LLAMA], ids=["gpt2", "llama"])
@given(data=st.data())
def test_tinygrad_slots_match_the_full_forward_pass(config, data):
    from backends import get_backend

    model, params = _model(get_backend("tinygrad"), config)
    _run_program(model, params, config, data)


def test_slots_refuse_a_bidirectional_model(backend):
    config = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8, causal=False)
    model = backend.build(config, init_params(config, seed=0))
    with pytest.raises(ValueError, match="bidirectional"):
        model.slot_start(2)
