"""LoRA (core/model/lora.py) in the numpy reference and both backends: logits with adapters, gradients of
the adapters only, AdamW steps that leave the base untouched, merged = unmerged, and the global gradient
norm both backends report.

The architecture and the LoRA settings are drawn by hypothesis with the shapes fixed (each new shape costs
tinygrad a compile, about 30 s per drawn example here), so few examples are drawn. Tolerances are
test_equivalence.py's, measured there for the same small models.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.model import reference
from core.model.config import GPTConfig, TrainConfig
from core.model.lora import VALID_TARGETS, LoraConfig, init_adapters, merge, trainable_shapes
from tests.test_architectures import LOGITS_ATOL, architectures, assert_step_close
from tests.test_equivalence import (
    EXP_AVG_ATOL,
    EXP_AVG_SQ_ATOL,
    GRAD_ATOL,
    LOSS_ATOL,
    accumulated_gradients,
    batch,
    global_norm,
    lively_params,
    numpy_adamw_step,
)

A, B, T = 2, 2, 8
TRAIN = TrainConfig(lr=1e-3, weight_decay=0.1, grad_clip=0.05, grad_accum=A)
EXAMPLES = min(2, settings.default.max_examples)  # each drawn example compiles anew in tinygrad
# Merged vs unmerged float32 logits: mostly about 1e-7, up to 1.05e-5 seen (alpha / r = 8, logits near 4);
# a wrong merge is off by more than 1e-2.
MERGED_ATOL = 1e-4


@st.composite
def lora_configs(draw) -> LoraConfig:
    targets = draw(st.lists(st.sampled_from(VALID_TARGETS), min_size=1, max_size=3, unique=True))
    return LoraConfig(rank=draw(st.sampled_from([1, 2, 4])), alpha=draw(st.sampled_from([1.0, 4.0, 16.0])),
                      targets=tuple(targets), train_biases=draw(st.booleans()), train_norms=draw(st.booleans()))


def lively_adapters(config: GPTConfig, lora: LoraConfig, params: dict, seed: int) -> dict[str, np.ndarray]:
    """Adapters with B non-zero (a fresh B is zero, which would hide a wrong B or a missing scale)."""
    rng = np.random.default_rng(seed)
    adapters = init_adapters(config, lora, params, seed)
    for name, value in adapters.items():
        if name.endswith(".lora_B"):
            adapters[name] = (rng.standard_normal(value.shape) / math.sqrt(lora.rank * lora.scale)).astype(np.float32)
    return adapters


def test_a_fresh_adapter_leaves_the_model_unchanged_and_merge_folds_it_in():
    config = GPTConfig(vocab_size=23, block_size=T, n_layer=2, n_head=4, n_embd=16)
    lora = LoraConfig(rank=2, alpha=4.0, targets=("c_attn", "mlp.c_proj"))
    params = lively_params(config, 0)
    tokens = np.random.default_rng(0).integers(0, 23, (B, T))
    fresh = init_adapters(config, lora, params, seed=1)
    assert sorted(fresh) == sorted(trainable_shapes(config, lora))
    assert all(not v.any() for k, v in fresh.items() if k.endswith("lora_B"))
    unchanged = reference.logits(config, params, tokens)
    assert np.array_equal(reference.logits(config, params, tokens, fresh, lora), unchanged)
    assert all(np.array_equal(merge(params, fresh, lora)[k], params[k]) for k in params)  # A @ 0 = 0
    adapters = lively_adapters(config, lora, params, 2)
    merged = merge(params, adapters, lora)
    want = params["h.1.mlp.c_proj.weight"] + lora.scale * adapters["h.1.mlp.c_proj.lora_A"].astype(np.float64) @ \
        adapters["h.1.mlp.c_proj.lora_B"]
    np.testing.assert_allclose(merged["h.1.mlp.c_proj.weight"], want, rtol=1e-6, atol=1e-7)
    assert np.array_equal(merged["h.0.attn.c_proj.weight"], params["h.0.attn.c_proj.weight"])  # not a target
    with_lora = reference.logits(config, params, tokens, adapters, lora)
    assert np.abs(with_lora - reference.logits(config, params, tokens)).max() > 1e-2  # the adapters act
    assert np.abs(reference.logits(config, merged, tokens) - with_lora).max() < MERGED_ATOL


@pytest.mark.parametrize(
    "fields, message",
    [({"rank": 0}, "--lora-rank 0"), ({"alpha": -1.0}, "--lora-alpha"), ({"targets": ("q_proj",)}, "c_attn, c_proj")],
)
def test_bad_lora_settings_are_one_line_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        LoraConfig(**fields)


@settings(max_examples=EXAMPLES)
@given(config=architectures(), lora=lora_configs(), seed=st.integers(0, 2**32 - 1))
def test_lora_equals_reference_in_both_backends(backends, config, lora, seed):
    params = lively_params(config, seed % 1000)
    adapters = lively_adapters(config, lora, params, seed % 997)
    tokens, targets = batch(config, seed, (B, T))
    models = {name: backends[name].build_lora(config, params, adapters, lora, TRAIN) for name in ("torch", "tinygrad")}
    want = reference.logits(config, params, tokens, adapters, lora)
    merged = merge(params, adapters, lora)
    for name, model in models.items():
        assert np.abs(model.logits(tokens) - want).max() < LOGITS_ATOL, f"{name} logits"
        assert model.loss(tokens, targets) == pytest.approx(
            reference.loss(config, params, tokens, targets, adapters, lora), abs=LOSS_ATOL)
        # params() is the merged model; a plain model of it computes what the adapted one does
        for key, value in model.params().items():
            np.testing.assert_allclose(value, merged[key], rtol=0, atol=1e-6, err_msg=f"{name} merged {key}")
    # (torch only: in tinygrad another model means another compile, and the merge itself is core code)
    plain = backends["torch"].build(config, models["torch"].params())
    assert np.abs(plain.logits(tokens) - models["torch"].logits(tokens)).max() < MERGED_ATOL, "merged logits"

    # gradients exist for what trains only, agree between backends, and are derivatives of the reference loss
    grads = {name: model.gradients(tokens, targets) for name, model in models.items()}
    assert sorted(grads["torch"]) == sorted(grads["tinygrad"]) == sorted(adapters)
    for key in adapters:
        np.testing.assert_allclose(grads["tinygrad"][key], grads["torch"][key], rtol=1e-5, atol=GRAD_ATOL, err_msg=key)
    rng = np.random.default_rng(seed % 1000)
    direction = {k: rng.standard_normal(v.shape) for k, v in adapters.items()}
    h = 1e-4 / math.sqrt(sum((d**2).sum() for d in direction.values()))
    moved = [{k: v.astype(np.float64) + s * h * direction[k] for k, v in adapters.items()} for s in (1, -1)]
    numeric = (reference.loss(config, params, tokens, targets, moved[0], lora)
               - reference.loss(config, params, tokens, targets, moved[1], lora))
    analytic = sum(float((grads["torch"][k].astype(np.float64) * direction[k]).sum()) for k in adapters)
    assert analytic * 2 * h == pytest.approx(numeric, rel=1e-4, abs=1e-9)

    # one AdamW step over the adapters only, with clipping and accumulation, against AdamW in numpy
    step_tokens, step_targets = batch(config, seed + 1, (A, B, T))
    step_grads = accumulated_gradients(models["torch"], step_tokens, step_targets)
    want_adapters, want_state = numpy_adamw_step(adapters, step_grads, 2e-3, TRAIN)
    for name, model in models.items():
        model.train_step(step_tokens, step_targets, 2e-3)
        assert model.last_grad_norm() == pytest.approx(global_norm(step_grads), rel=1e-4)
        assert_step_close(model.adapters(), want_adapters, config, 2e-3, name)
        state = model.optimizer_state()
        assert sorted(state) == sorted(want_state)  # AdamW state of what trains, nothing of the base
        for key, value in want_state.items():
            if key != "step":
                atol = EXP_AVG_ATOL if key.startswith("exp_avg.") else EXP_AVG_SQ_ATOL
                assert np.abs(state[key] - value).max() <= atol, f"{name}: {key}"
        # the frozen base did not move by a single bit: params() is merge(base, adapters) computed by the
        # same function, so it equals the merge of the *original* base with the new adapters exactly
        now, refold = model.params(), merge(params, model.adapters(), lora)
        for key in params:
            assert np.array_equal(now[key], refold[key]), f"{name}: {key} moved"


def test_reported_gradient_norm_is_the_norm_of_the_gradients(backend):
    """Without clipping (the LoRA test above checks it with clipping) the norm is computed all the same."""
    config = GPTConfig(vocab_size=23, block_size=T, n_layer=2, n_head=2, n_embd=16)
    params = lively_params(config, 3)
    tokens, targets = batch(config, 5, (A, B, T))
    train = TRAIN.replace(grad_clip=0.0)
    want = global_norm(accumulated_gradients(backend.build(config, params, train), tokens, targets))
    model = backend.build(config, params, train)
    for _ in range(2):  # the second call replays tinygrad's captured step
        model.load_params(params)
        model.train_step(tokens, targets, 1e-3)
        assert model.last_grad_norm() == pytest.approx(want, rel=1e-5)
