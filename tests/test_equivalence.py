"""torch and tinygrad on the same numpy parameters and batches: gradients, AdamW steps with
clipping and accumulation, optimizer state; and both against an AdamW written out in numpy.

Tolerances were measured on this machine (2-core CPU, torch 2.13, tinygrad 0.14) and are stated
beside each constant with the margin they leave.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.model import reference
from core.model.config import GPTConfig, TrainConfig
from core.model.params import decays, init_params
from tests.test_backends import drawn_cases

CONFIG = GPTConfig(vocab_size=23, block_size=8, n_layer=2, n_head=2, n_embd=16)
CONFIGS = {"tied-bias": CONFIG, "untied-nobias": CONFIG.replace(bias=False, tie_embeddings=False)}
A, B = 2, 2  # micro-batches per step and sequences per micro-batch: tokens are (A, B, block_size)
# A small clip so that clipping acts on every step (the global norm here is 3-6; checked below).
TRAIN = TrainConfig(lr=1e-3, weight_decay=0.1, grad_clip=0.05, grad_accum=A)
LRS = [1e-3, 3e-3, 2e-3, 5e-4, 1e-3]  # a new rate each step: tinygrad's jit must not freeze the first

# Gradients, max-abs: measured 4.8e-7 (gradients up to 0.9 with lively_params): 20x margin.
GRAD_ATOL = 1e-5
# Parameters after AdamW steps. Adam divides each gradient by its own running RMS, so where a gradient
# is round-off-sized the update is round-off divided by round-off, and the backends may differ by a
# good fraction of lr. That always happens in the key-projection bias (adding a constant to every key
# of a query leaves its softmax unchanged: its true gradient is exactly zero) and now and then in an
# element whose gradient passes near zero. Measured over 6 seeds: key bias up to 0.018 * sum(lr)
# after 5 steps and 0.038 * lr after one step vs numpy (limit 0.2 * sum(lr): 5x margin); any other
# element up to 4.4e-6 (limit 3e-5: 7x), and at most 2 of 7056 elements beyond 1e-6 (limit 0.1%, i.e.
# 7). A missing weight decay alone moves typical weights by lr * wd * |p| ~ 2.5e-5 per step; a wrong
# clip or bias correction shifts nearly every element, which the 0.1% rule catches.
KEY_BIAS_ATOL_PER_LR = 0.2
PARAM_ATOL = 3e-5
PARAM_TIGHT_ATOL, PARAM_TIGHT_FRACTION = 1e-6, 1e-3
# AdamW moments after 5 steps: measured 2.6e-9 (exp_avg, values up to 2e-3) and 8e-12 (exp_avg_sq,
# up to 1.3e-5): about 40x and 100x margin. Unclipped moments would be 70-120x (and 5000x) larger.
EXP_AVG_ATOL, EXP_AVG_SQ_ATOL = 1e-7, 1e-9
LOSS_ATOL = 1e-5  # measured 4.8e-7


def lively_params(config: GPTConfig, seed: int) -> dict[str, np.ndarray]:
    """Parameters far from GPT-2's init: non-zero biases, LayerNorm gains away from one and weights
    large enough that attention is far from uniform, so a dropped or misplaced term shows."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, value in init_params(config, seed).items():
        noise = rng.standard_normal(value.shape)
        if value.ndim == 1:
            params[name] = value + 0.2 * noise
        elif name in ("wte.weight", "wpe.weight", "lm_head.weight"):
            params[name] = 0.5 * noise
        else:
            params[name] = noise / math.sqrt(value.shape[0])  # (in, out): unit-variance outputs
    return {name: value.astype(np.float32) for name, value in params.items()}


def batch(config: GPTConfig, seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens, targets = rng.integers(0, config.vocab_size, shape), rng.integers(0, config.vocab_size, shape)
    targets[rng.random(shape) < 0.2] = -1  # some ignored positions
    return tokens, targets


def step_batch(seed: int) -> tuple[np.ndarray, np.ndarray]:
    return batch(CONFIG, seed, (A, B, CONFIG.block_size))


def accumulated_gradients(model, tokens: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """The gradient train_step uses: the mean of the micro-batches' gradients, in float64."""
    grads = [model.gradients(x, y) for x, y in zip(tokens, targets)]
    return {name: np.mean([g[name].astype(np.float64) for g in grads], axis=0) for name in grads[0]}


def global_norm(grads: dict[str, np.ndarray]) -> float:
    return math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))


def key_bias(name: str, n_embd: int) -> slice | None:
    """The key part of c_attn's bias, whose true gradient is exactly zero."""
    return slice(n_embd, 2 * n_embd) if name.endswith("attn.c_attn.bias") else None


def assert_params_close(got: dict, want: dict, n_embd: int, lr_sum: float, what: str) -> None:
    assert sorted(got) == sorted(want)
    others = []
    for name in want:
        diff = np.abs(got[name].astype(np.float64) - want[name])
        keys = key_bias(name, n_embd)
        if keys is not None:
            assert diff[keys].max() <= KEY_BIAS_ATOL_PER_LR * lr_sum, f"{what}: {name} keys"
            diff = np.delete(diff, keys)
        assert diff.max() <= PARAM_ATOL, f"{what}: {name} differs by {diff.max():.2e}"
        others.append(diff.ravel())
    others = np.concatenate(others)
    loose = int((others > PARAM_TIGHT_ATOL).sum())
    assert loose <= PARAM_TIGHT_FRACTION * others.size, f"{what}: {loose} of {others.size} elements beyond 1e-6"


def step_of(state: dict) -> int:
    return int(np.asarray(state["step"]).reshape(-1)[0])


def assert_states_close(got: dict, want: dict, what: str) -> None:
    assert sorted(got) == sorted(want)
    assert step_of(got) == step_of(want)
    for key in want:
        if key != "step":
            atol = EXP_AVG_ATOL if key.startswith("exp_avg.") else EXP_AVG_SQ_ATOL
            diff = np.abs(got[key].astype(np.float64) - want[key]).max()
            assert diff <= atol, f"{what}: {key} differs by {diff:.2e}"


# ---- gradients


@pytest.mark.parametrize("name", sorted(CONFIGS))
@settings(max_examples=min(3, settings.default.max_examples))  # tinygrad re-plans each gradient call: ~3 s
@given(seed=st.integers(0, 2**32 - 1))
def test_gradients_agree(backends, name, seed):
    config = CONFIGS[name]
    params, (tokens, targets) = lively_params(config, seed), batch(config, seed, (B, config.block_size))
    torch_model, tiny_model = (backends[n].build(config, params) for n in ("torch", "tinygrad"))
    want, got = torch_model.gradients(tokens, targets), tiny_model.gradients(tokens, targets)
    assert sorted(got) == sorted(want) == sorted(params)
    for key in want:
        assert got[key].shape == params[key].shape
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=GRAD_ATOL, err_msg=key)
    assert all(np.array_equal(tiny_model.params()[k], params[k]) for k in params)  # no weights changed
    assert all(np.array_equal(torch_model.params()[k], params[k]) for k in params)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_and_gradients_agree_with_a_padded_head(backends, name):
    """64 positions a call: tinygrad's output head pads the 23-token vocabulary to 32 zero rows and reads
    a transposed copy (model.py, Embedding.attend); logits and gradients are still torch's."""
    config = CONFIGS[name]
    params, (tokens, targets) = lively_params(config, 5), batch(config, 5, (8, config.block_size))
    torch_model, tiny_model = (backends[n].build(config, params) for n in ("torch", "tinygrad"))
    np.testing.assert_allclose(tiny_model.logits(tokens), torch_model.logits(tokens), rtol=1e-5, atol=1e-5)
    want, got = torch_model.gradients(tokens, targets), tiny_model.gradients(tokens, targets)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=GRAD_ATOL, err_msg=key)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_gradients_are_derivatives_of_the_reference_loss(backends, name):
    """Directional derivative of the float64 numpy loss by central differences vs <gradient, direction>.
    torch only: test_gradients_agree holds tinygrad to torch, and each tinygrad gradient call costs ~3 s."""
    config = CONFIGS[name]
    params, (tokens, targets) = lively_params(config, 11), batch(config, 11, (B, config.block_size))
    grads = backends["torch"].build(config, params).gradients(tokens, targets)
    rng = np.random.default_rng(12)
    direction = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    norm = math.sqrt(sum((d**2).sum() for d in direction.values()))
    direction = {k: d / norm for k, d in direction.items()}
    h = 1e-4  # float64: truncation ~h^2 and round-off ~1e-16/h are both far below the tolerance

    def loss_at(sign: float) -> float:
        moved = {k: v.astype(np.float64) + sign * h * direction[k] for k, v in params.items()}
        return reference.loss(config, moved, tokens, targets)

    numeric = (loss_at(1.0) - loss_at(-1.0)) / (2 * h)
    analytic = sum(float((grads[k].astype(np.float64) * direction[k]).sum()) for k in params)
    assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-6)


# ---- training


def test_training_steps_agree(backends):
    params = lively_params(CONFIG, 1)
    torch_model, tiny_model = (backends[n].build(CONFIG, params, TRAIN) for n in ("torch", "tinygrad"))
    for step, lr in enumerate(LRS):
        tokens, targets = step_batch(100 + step)
        # Clipping must act, or this test would not cover it.
        assert global_norm(accumulated_gradients(torch_model, tokens, targets)) > 2 * TRAIN.grad_clip
        want = np.mean([reference.loss(CONFIG, torch_model.params(), x, y) for x, y in zip(tokens, targets)])
        loss_torch, loss_tiny = torch_model.train_step(tokens, targets, lr), tiny_model.train_step(tokens, targets, lr)
        assert loss_torch == pytest.approx(want, abs=LOSS_ATOL)
        assert loss_tiny == pytest.approx(loss_torch, abs=LOSS_ATOL)
    assert_params_close(tiny_model.params(), torch_model.params(), CONFIG.n_embd, sum(LRS), "after 5 steps")
    assert_states_close(tiny_model.optimizer_state(), torch_model.optimizer_state(), "after 5 steps")
    assert step_of(torch_model.optimizer_state()) == len(LRS)
    # and training did something: every parameter moved by about lr per step
    moved = {k: np.abs(torch_model.params()[k] - params[k]).max() for k in params}
    assert min(moved.values()) > 1e-4, moved


def numpy_adamw_step(params, grads, lr: float, train: TrainConfig) -> tuple[dict, dict]:
    """One AdamW step from zero moments, in float64: clip the global norm as torch's clip_grad_norm_
    does (scale = clip / (norm + 1e-6), at most 1), then decoupled decay on matrices only."""
    scale = min(1.0, train.grad_clip / (global_norm(grads) + 1e-6)) if train.grad_clip > 0 else 1.0
    b1, b2 = train.beta1, train.beta2
    new, state = {}, {"step": 1}
    for name, p in params.items():
        g = grads[name] * scale
        m, v = (1 - b1) * g, (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1), v / (1 - b2)  # bias correction at step 1
        decay = train.weight_decay if decays(name, p.shape) else 0.0
        new[name] = p.astype(np.float64) * (1 - lr * decay) - lr * m_hat / (np.sqrt(v_hat) + train.eps)
        state[f"exp_avg.{name}"], state[f"exp_avg_sq.{name}"] = m, v
    return new, state


def test_train_step_matches_numpy_adamw(backends, backend):
    params, (tokens, targets) = lively_params(CONFIG, 2), step_batch(200)
    grads = accumulated_gradients(backends["torch"].build(CONFIG, params), tokens, targets)
    assert global_norm(grads) > 2 * TRAIN.grad_clip  # clipping acts
    lr = 2e-3  # not TRAIN.lr: the rate passed to train_step is the one used
    want_params, want_state = numpy_adamw_step(params, grads, lr, TRAIN)
    model = backend.build(CONFIG, params, TRAIN)
    loss = model.train_step(tokens, targets, lr)
    want_loss = np.mean([reference.loss(CONFIG, params, x, y) for x, y in zip(tokens, targets)])
    assert loss == pytest.approx(want_loss, abs=LOSS_ATOL)
    assert_params_close(model.params(), want_params, CONFIG.n_embd, lr, f"{backend.name} vs numpy")
    # The moments show the clipped gradient itself, which Adam's update alone would hide
    # (at step 1 it is lr * sign(g), whatever the scale).
    assert_states_close(model.optimizer_state(), want_state, f"{backend.name} vs numpy")


BIGRAM = GPTConfig(vocab_size=5, block_size=1, n_layer=1, n_head=1, n_embd=7)  # odd sizes, one position


@settings(max_examples=min(2, settings.default.max_examples))  # each new config compiles a step: 10-40 s cold
@given(drawn_cases())
@example((BIGRAM, lively_params(BIGRAM, 4), np.array([[1, 4], [0, 2], [3, 3]])[:, :1]))  # always tried
def test_train_step_on_drawn_configs_matches_numpy_adamw(backends, backend, case):
    """Sizes the fixed configs do not have: parameters whose lengths 4 does not divide (tinygrad's flat
    optimizer buffers, its vector loads), a block of one position (a constant position index)."""
    config, params, tokens = case
    tokens, targets = tokens[None], np.roll(tokens, -1, axis=-1)[None]  # one micro-batch
    lr = 1e-3
    grads = accumulated_gradients(backends["torch"].build(config, params), tokens, targets)
    want_params, want_state = numpy_adamw_step(params, grads, lr, TRAIN)
    model = backend.build(config, params, TRAIN)
    loss = model.train_step(tokens, targets, lr)
    assert loss == pytest.approx(reference.loss(config, params, tokens[0], targets[0]), abs=LOSS_ATOL)
    assert_states_close(model.optimizer_state(), want_state, f"{backend.name} vs numpy")
    # Adam's first step moves an element by lr * g / (|g| + eps): by lr where the gradient is clearly not
    # zero, checked to PARAM_ATOL. Elsewhere it is round-off over round-off (a one-position block's queries
    # and keys: a softmax over one key is constant), checked only for staying within a step of lr.
    got = model.params()
    for name, want in want_params.items():
        diff = np.abs(got[name].astype(np.float64) - want)
        clear = np.abs(want_state[f"exp_avg.{name}"]) > 1e-5
        assert diff.max() <= 2 * lr + PARAM_ATOL, f"{backend.name}: {name} moved more than one step"
        assert diff[clear].max(initial=0) <= PARAM_ATOL, f"{backend.name}: {name} differs by {diff[clear].max():.2e}"


def test_chunked_weight_gradients_make_the_same_step(backends, monkeypatch):
    """tinygrad summing every linear layer's weight gradient over chunks of 8 positions (fusion.py does
    so from CHUNKED_FROM FLOPs, here forced for a small model): still numpy's step and moments."""
    from backends.tinygrad import fusion

    monkeypatch.setattr(fusion, "GRADIENT_CHUNK", 8)  # 2 chunks of a micro-batch's 16 positions
    monkeypatch.setattr(fusion, "CHUNKED_FROM", 0)
    test_train_step_matches_numpy_adamw(backends, backends["tinygrad"])


def test_weight_decay_only_on_matrices(backend):
    params, (tokens, targets) = lively_params(CONFIG, 3), step_batch(300)
    lr = 1e-2
    decayed, plain = (backend.build(CONFIG, params, TRAIN.replace(weight_decay=wd)) for wd in (TRAIN.weight_decay, 0.0))
    decayed.train_step(tokens, targets, lr)
    plain.train_step(tokens, targets, lr)
    after_decayed, after_plain = decayed.params(), plain.params()
    for name, p in params.items():
        if p.ndim == 1:  # biases and LayerNorm gains: weight decay must not touch them
            assert np.array_equal(after_decayed[name], after_plain[name]), name
        else:  # matrices: decoupled decay shrinks the old value by lr * wd, on top of the same update
            difference = after_decayed[name].astype(np.float64) - after_plain[name]
            np.testing.assert_allclose(difference, -lr * TRAIN.weight_decay * p, rtol=1e-2, atol=1e-7, err_msg=name)


def test_optimizer_state_moves_between_backends(backends):
    torch_model = backends["torch"].build(CONFIG, lively_params(CONFIG, 4), TRAIN)
    tiny_model = backends["tinygrad"].build(CONFIG, lively_params(CONFIG, 5), TRAIN)
    for step in range(2):  # both trained on different data: tinygrad's jit has captured its step
        torch_model.train_step(*step_batch(400 + step), LRS[step])
        tiny_model.train_step(*step_batch(410 + step), LRS[step])
    # torch -> tinygrad: the state arrives exactly, and training goes on as in torch
    exported_params, exported_state = torch_model.params(), torch_model.optimizer_state()
    tiny_model.load_params(exported_params)
    tiny_model.load_optimizer_state(exported_state)
    loaded = tiny_model.optimizer_state()
    assert sorted(loaded) == sorted(exported_state) and step_of(loaded) == 2
    for key in exported_state:
        assert np.array_equal(np.asarray(loaded[key]).reshape(-1), np.asarray(exported_state[key]).reshape(-1)), key
    for step in range(2, 4):  # jit replays
        batch_ = step_batch(420 + step)
        assert tiny_model.train_step(*batch_, LRS[step]) == pytest.approx(
            torch_model.train_step(*batch_, LRS[step]), abs=LOSS_ATOL
        )
    assert_params_close(tiny_model.params(), torch_model.params(), CONFIG.n_embd, sum(LRS[:4]), "torch -> tinygrad")
    assert_states_close(tiny_model.optimizer_state(), torch_model.optimizer_state(), "torch -> tinygrad")
    assert step_of(tiny_model.optimizer_state()) == 4
    # tinygrad -> a fresh torch model
    fresh = backends["torch"].build(CONFIG, tiny_model.params(), TRAIN)
    fresh.load_optimizer_state(tiny_model.optimizer_state())
    for key, value in tiny_model.optimizer_state().items():
        assert np.array_equal(np.asarray(fresh.optimizer_state()[key]).reshape(-1), np.asarray(value).reshape(-1)), key
    batch_ = step_batch(430)
    fresh.train_step(*batch_, LRS[4])
    tiny_model.train_step(*batch_, LRS[4])
    assert_params_close(fresh.params(), tiny_model.params(), CONFIG.n_embd, sum(LRS), "tinygrad -> torch")
    assert_states_close(fresh.optimizer_state(), tiny_model.optimizer_state(), "tinygrad -> torch")


@pytest.mark.parametrize("step", [3, 2000])
def test_optimizer_state_round_trips_exactly(backend, step):
    model = backend.build(CONFIG, init_params(CONFIG), TRAIN)
    rng = np.random.default_rng(step)
    state = {key: rng.random(np.shape(value)).astype(np.float32) for key, value in model.optimizer_state().items()}
    state["step"] = np.array([step], dtype=np.int64)
    model.load_optimizer_state(state)
    out = model.optimizer_state()
    assert step_of(out) == step
    assert sorted(out) == sorted(state)
    for key in state:
        if key != "step":
            assert np.array_equal(out[key], state[key]), key


def _classes(path: str) -> dict[str, list[str]]:
    """Class name -> its method names (torch's `forward` read as `__call__`), from the source."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[1] / path).read_text())
    methods = lambda node: sorted(  # noqa: E731
        "__call__" if f.name == "forward" else f.name for f in node.body if isinstance(f, ast.FunctionDef)
    )
    return {node.name: methods(node) for node in tree.body if isinstance(node, ast.ClassDef)}


def test_the_two_model_files_hold_the_same_classes_and_methods():
    """What the README claims for backends/torch/model.py and backends/tinygrad/model.py."""
    torch_classes, tinygrad_classes = _classes("backends/torch/model.py"), _classes("backends/tinygrad/model.py")
    assert torch_classes == tinygrad_classes
    assert {"Linear", "LayerNorm", "Embedding", "KVCache", "CausalSelfAttention", "MLP", "Block", "GPT"} <= set(
        torch_classes
    )
