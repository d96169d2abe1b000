"""Every architecture option (RoPE, RMSNorm, SwiGLU, grouped-query attention, with and without biases and
tied embeddings), drawn by hypothesis, in both backends against the numpy reference: logits, gradients,
an AdamW step, KV-cache decoding, greedy generation and checkpoints that move between backends.

The shapes stay fixed and only the options and data are drawn: each new configuration costs tinygrad
its compile (about 40 s here for the whole list below), so few examples are drawn by default. The
tolerances are test_equivalence.py's and test_backends.py's, measured there; the drawn configurations
here came out within the same bounds (largest differences seen: logits 1.2e-7, gradients 5e-7).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.generate.generation import generate
from core.model import reference
from core.model.config import GPTConfig, TrainConfig
from core.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from core.train.meta import CheckpointMeta
from tests.test_equivalence import (
    EXP_AVG_ATOL,
    EXP_AVG_SQ_ATOL,
    GRAD_ATOL,
    KEY_BIAS_ATOL_PER_LR,
    LOSS_ATOL,
    PARAM_ATOL,
    accumulated_gradients,
    batch,
    global_norm,
    lively_params,
    numpy_adamw_step,
)

LOGITS_ATOL = 1e-4  # test_backends.py's bound for float32 backends against the float64 reference
A, B, T = 2, 2, 8  # micro-batches, sequences and tokens per training step
TRAIN = TrainConfig(lr=1e-3, weight_decay=0.1, grad_clip=0.05, grad_accum=A)
EXAMPLES = min(4, settings.default.max_examples)  # each drawn configuration compiles anew in tinygrad


@st.composite
def architectures(draw) -> GPTConfig:
    """A small GPT with every option drawn; the shapes (and so tinygrad's kernels per option) fixed."""
    return GPTConfig(
        vocab_size=23,
        block_size=T,
        n_layer=2,
        n_head=4,
        n_embd=16,
        position=draw(st.sampled_from(["learned", "rope"])),
        rope_theta=draw(st.sampled_from([10000.0, 500.0])),
        norm=draw(st.sampled_from(["layernorm", "rmsnorm"])),
        mlp=draw(st.sampled_from(["gelu", "swiglu"])),
        n_inner=draw(st.sampled_from([0, 24])),
        n_kv_head=draw(st.sampled_from([0, 1, 2])),
        bias=draw(st.booleans()),
        tie_embeddings=draw(st.booleans()),
    )


def key_bias(config: GPTConfig) -> slice:
    """The key part of c_attn's bias: its true gradient is zero with learned positions, round-off-sized."""
    C = config.n_embd
    return slice(C, C + config.kv_heads * config.head_size)


def assert_step_close(got: dict, want: dict, config: GPTConfig, lr: float, what: str) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        diff = np.abs(got[name].astype(np.float64) - want[name])
        if name.endswith("attn.c_attn.bias"):
            assert diff[key_bias(config)].max() <= KEY_BIAS_ATOL_PER_LR * lr, f"{what}: {name} keys"
            diff = np.delete(diff, key_bias(config))
        # Adam divides each backend's round-off by sqrt(v) + eps, so entries with near-zero gradients
        # (seen: c_proj with one key/value head and SwiGLU) move by up to a few percent of lr; a wrong
        # update moves by about lr. So the bound grows with lr (FACTS.md, "Numerics").
        bound = max(PARAM_ATOL, 0.1 * lr)
        assert diff.max() <= bound, f"{what}: {name} differs by {diff.max():.2e}"


@settings(max_examples=EXAMPLES)
@given(config=architectures(), seed=st.integers(0, 2**32 - 1))
def test_drawn_architecture_equals_reference_in_both_backends(backends, config, seed):
    params = lively_params(config, seed % 1000)
    tokens, targets = batch(config, seed, (B, T))
    models = {name: backends[name].build(config, params, TRAIN) for name in ("torch", "tinygrad")}
    want = reference.logits(config, params, tokens)
    for name, model in models.items():
        assert np.abs(model.logits(tokens) - want).max() < LOGITS_ATOL, f"{name} logits"
        want_loss = reference.loss(config, params, tokens, targets)
        assert model.loss(tokens, targets) == pytest.approx(want_loss, abs=LOSS_ATOL)
        maps = model.attention_maps(tokens)
        for got, ref in zip(maps, reference.forward(config, params, tokens)[1], strict=True):
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5, err_msg=f"{name} attention maps")

    # gradients: the backends agree, and torch's are derivatives of the reference loss
    grads = {name: model.gradients(tokens, targets) for name, model in models.items()}
    for key in params:
        np.testing.assert_allclose(
            grads["tinygrad"][key], grads["torch"][key], rtol=1e-5, atol=GRAD_ATOL, err_msg=key
        )
    rng = np.random.default_rng(seed % 1000)
    direction = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    norm = math.sqrt(sum((d**2).sum() for d in direction.values()))
    h = 1e-4 / norm
    moved = [{k: v.astype(np.float64) + s * h * direction[k] for k, v in params.items()} for s in (1, -1)]
    numeric = (reference.loss(config, moved[0], tokens, targets) - reference.loss(config, moved[1], tokens, targets))
    analytic = sum(float((grads["torch"][k].astype(np.float64) * direction[k]).sum()) for k in params)
    assert analytic * 2 * h == pytest.approx(numeric, rel=1e-4, abs=1e-9)

    # one AdamW step with clipping and accumulation, against AdamW in numpy
    step_tokens, step_targets = batch(config, seed + 1, (A, B, T))
    step_grads = accumulated_gradients(models["torch"], step_tokens, step_targets)
    assert global_norm(step_grads) > 2 * TRAIN.grad_clip  # clipping acts
    want_params, want_state = numpy_adamw_step(params, step_grads, 2e-3, TRAIN)
    for name, model in models.items():
        model.train_step(step_tokens, step_targets, 2e-3)
        assert_step_close(model.params(), want_params, config, 2e-3, name)
        for key, value in want_state.items():
            if key != "step":
                atol = EXP_AVG_ATOL if key.startswith("exp_avg.") else EXP_AVG_SQ_ATOL
                assert np.abs(model.optimizer_state()[key] - value).max() <= atol, f"{name}: {key}"


@settings(max_examples=EXAMPLES)
@given(config=architectures(), seed=st.integers(0, 2**32 - 1), prompt=st.integers(1, T - 1))
def test_drawn_architecture_decodes_generates_and_moves_between_backends(
    backends, tmp_path_factory, config, seed, prompt
):
    params = lively_params(config, seed % 1000)
    tokens = np.random.default_rng(seed).integers(0, config.vocab_size, (2, T))
    full = reference.logits(config, params, tokens)
    models = {name: backends[name].build(config, params) for name in ("torch", "tinygrad")}
    for name, model in models.items():  # the KV cache (n_kv_head heads, keys after RoPE) equals the full pass
        assert np.abs(model.prefill(tokens[:, :prompt]) - full[:, prompt - 1]).max() < LOGITS_ATOL, f"{name} prefill"
        for pos in range(prompt, T):
            assert np.abs(model.decode(tokens[:, pos]) - full[:, pos]).max() < LOGITS_ATOL, f"{name} decode {pos}"

    prompts = [list(tokens[0, :prompt]), list(tokens[1, :2])]
    greedy = {name: generate(model, prompts, max_new_tokens=12, temperature=0.0) for name, model in models.items()}
    assert greedy["torch"] == greedy["tinygrad"]  # identical token ids, past block_size (the window slides)
    assert generate(models["torch"], prompts, max_new_tokens=12, use_cache=False) == greedy["torch"]

    # a checkpoint written from one backend loads into the other, exactly
    checkpoint = Checkpoint(config, models["torch"].params(), CheckpointMeta())
    folder = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", checkpoint)
    loaded = load_checkpoint(folder)
    assert loaded.config == config
    moved = backends["tinygrad"].build(loaded.config, loaded.params)
    for key, value in moved.params().items():
        assert np.array_equal(value, params[key]), key
    np.testing.assert_array_equal(moved.logits(tokens), models["tinygrad"].logits(tokens))


@pytest.mark.parametrize("n_kv_head", [1, 2])
def test_kv_cache_holds_only_the_kv_heads(backend, n_kv_head):
    config = GPTConfig(
        vocab_size=23, block_size=T, n_layer=1, n_head=4, n_embd=16, n_kv_head=n_kv_head, position="rope"
    )
    model = backend.build(config, lively_params(config, 0))
    model.prefill(np.zeros((3, 2), dtype=np.int64))
    assert tuple(model.cache.k[0].shape) == (3, n_kv_head, T, 4) == tuple(model.cache.v[0].shape)
