"""The generation loop on both backends: the KV cache against full forward passes, the backends
against each other, batches against single prompts, stop tokens and the text-level wrapper.

One small config throughout (block_size 16) and a handful of prompt lengths, because tinygrad
compiles every new tensor shape (about 2 s each here). Generations run 32 new tokens from prompts
of 12-15 tokens, so most steps are past block_size and exercise the cropped-window path.
Results are memoised per (backend, model, settings), so cross-backend tests reuse earlier runs.
"""

from __future__ import annotations

import string

import numpy as np
import pytest

from core.generate.generation import PromptTruncatedWarning, generate, generate_text
from core.model import reference
from core.model.config import GPTConfig
from core.model.params import init_params

CONFIG = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=4, n_embd=32)
N_NEW = 32
# The "trained" model learns to repeat this cycle; 0 is the end-of-text id of CharTokenizer below.
PATTERN = [0, 33, 21, 60, 2, 11, 5, 17, 42, 8]
LENGTHS = (12, 13, 15)
_rng = np.random.default_rng(1)
PROMPTS = {
    "random": [_rng.integers(0, CONFIG.vocab_size, n).tolist() for n in LENGTHS],
    "trained": [[PATTERN[(start + j) % len(PATTERN)] for j in range(n)] for start, n in zip((0, 4, 7), LENGTHS)],
}
SETTINGS = {"greedy": {}, "sampled": dict(temperature=0.8, top_k=20, top_p=0.9, seed=7)}
CASES = [("random", "greedy"), ("trained", "greedy"), ("random", "sampled")]


class CharTokenizer:
    """A minimal tokenizer: one id per character, id 0 is end-of-text (decoded as nothing)."""

    eot_id = 0

    def __init__(self) -> None:
        self.chars = string.ascii_letters + string.digits + " "  # ids 1..63
        self.ids = {c: i + 1 for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> list[int]:
        return [self.ids[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i - 1] for i in ids if i != self.eot_id)


class ReferenceModel:
    """The numpy reference behind the Model interface, no framework; its 'cache' is the token history."""

    def __init__(self, config: GPTConfig, params: dict[str, np.ndarray]):
        self.config, self.p, self.history = config, params, None

    def logits(self, tokens: np.ndarray) -> np.ndarray:
        return reference.logits(self.config, self.p, np.asarray(tokens))

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        self.history = np.asarray(tokens)
        return self.logits(self.history)[:, -1]

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        assert self.history.shape[1] < self.config.block_size, "decode past block_size"
        self.history = np.concatenate([self.history, np.asarray(tokens)[:, None]], axis=1)
        return self.logits(self.history)[:, -1]


class Counting:
    """Wraps a model and counts its forward calls."""

    def __init__(self, model):
        self.model, self.config, self.calls = model, model.config, 0

    def __getattr__(self, name):
        self.calls += 1
        return getattr(self.model, name)


@pytest.fixture(scope="session")
def params() -> dict[str, dict[str, np.ndarray]]:
    """Random weights, and weights trained to continue PATTERN (trained with torch: tinygrad's
    training step takes over 30 s to compile here, and both backends then share identical weights)."""
    from backends import get_backend

    random = init_params(CONFIG, seed=0)
    model = get_backend("torch").build(CONFIG, random)
    rng = np.random.default_rng(0)
    cycle = np.array(PATTERN * 4)
    for _ in range(60):
        starts = rng.integers(0, len(PATTERN), 8)
        windows = np.stack([cycle[s : s + CONFIG.block_size + 1] for s in starts])  # (8, 17)
        loss = model.train_step(windows[:, :-1], windows[:, 1:], lr=2e-2)
    assert loss < 0.1, f"the pattern was not learned (loss {loss:.3f})"
    return {"random": random, "trained": model.params()}


@pytest.fixture(scope="session")
def run(params):
    """run(backend, model_name, settings_name, use_cache) -> (outputs, stats), memoised."""
    models, results = {}, {}

    def model_for(backend, model_name):
        key = (backend.name, model_name)
        if key not in models:
            models[key] = backend.build(CONFIG, params[model_name])
        return models[key]

    def run(backend, model_name, settings_name, use_cache=True):
        key = (backend.name, model_name, settings_name, use_cache)
        if key not in results:
            model = model_for(backend, model_name)
            results[key] = generate(
                model, PROMPTS[model_name], N_NEW, use_cache=use_cache, return_stats=True, **SETTINGS[settings_name]
            )
        return results[key]

    run.model_for = model_for
    return run


def assert_stats_close(a: list[list[dict]], b: list[list[dict]], atol: float = 1e-5) -> None:
    for row_a, row_b in zip(a, b, strict=True):
        for key in ("prob", "sample_prob", "entropy", "model_entropy"):
            assert np.allclose([s[key] for s in row_a], [s[key] for s in row_b], atol=atol), key
        assert [s["rank"] for s in row_a] == [s["rank"] for s in row_b]


@pytest.mark.parametrize("model_name, settings_name", CASES)
def test_cache_matches_full_forward(backend, run, model_name, settings_name):
    cached, cached_stats = run(backend, model_name, settings_name, use_cache=True)
    full, full_stats = run(backend, model_name, settings_name, use_cache=False)
    assert [len(row) for row in cached] == [N_NEW] * len(LENGTHS)
    assert cached == full
    assert_stats_close(cached_stats, full_stats)


@pytest.mark.parametrize("model_name, settings_name", CASES)
def test_backends_agree(backends, run, model_name, settings_name):
    torch_out, torch_stats = run(backends["torch"], model_name, settings_name)
    tiny_out, tiny_stats = run(backends["tinygrad"], model_name, settings_name)
    assert torch_out == tiny_out
    assert_stats_close(torch_stats, tiny_stats)


def test_trained_model_continues_the_pattern(backend, run):
    outputs, stats = run(backend, "trained", "greedy")
    for prompt, out in zip(PROMPTS["trained"], outputs):
        start = PATTERN.index(prompt[0]) + len(prompt)
        assert out == [PATTERN[(start + j) % len(PATTERN)] for j in range(N_NEW)]
    assert min(s["prob"] for row in stats for s in row) > 0.5  # peaked: the ties of a random model are absent


@pytest.mark.parametrize("settings_name", ["greedy", "sampled"])
def test_batch_equals_each_prompt_alone(backend, run, settings_name):
    """Row i of a batch = prompt i alone (with seed + i when sampling); compared over the first 8
    tokens, which already cross block_size for the longer prompts."""
    batch, _ = run(backend, "random", settings_name)
    model = run.model_for(backend, "random")
    settings = dict(SETTINGS[settings_name])
    for i, prompt in enumerate(PROMPTS["random"]):
        if "seed" in settings:
            settings["seed"] = SETTINGS[settings_name]["seed"] + i
        alone = generate(model, [prompt], 8, **settings)
        assert alone[0] == batch[i][:8]


def test_stop_token_ends_each_row(backend, run):
    full, _ = run(backend, "trained", "greedy")
    stop = full[0][2]
    model = Counting(run.model_for(backend, "trained"))
    seen: list[tuple[int, int]] = []
    outputs, stats = generate(
        model, PROMPTS["trained"], N_NEW, stop_token=stop, return_stats=True, on_token=lambda r, t: seen.append((r, t))
    )
    for i, row in enumerate(full):
        assert outputs[i] == row[: row.index(stop)]  # the stop token itself is left out
        assert len(stats[i]) == len(outputs[i])
        assert [t for r, t in seen if r == i] == outputs[i]
    assert model.calls < N_NEW  # the loop ended when the last row stopped


def test_generate_text(backend, run):
    tokenizer = CharTokenizer()
    model = run.model_for(backend, "trained")
    long_prompt = "the quick brown fox jumps"  # 25 characters: more than block_size
    prompts = ["", "Hello", long_prompt]
    with pytest.warns(PromptTruncatedWarning, match="prompt 2 has 25 tokens, more than block_size=16"):
        texts = generate_text(model, tokenizer, prompts, 12)
    ids = [[0], tokenizer.encode("Hello"), tokenizer.encode(long_prompt)[-16:]]
    expected = generate(model, ids, 12, stop_token=tokenizer.eot_id)
    assert texts == [tokenizer.decode(row) for row in expected]
    # From end-of-text the model runs through the cycle and stops at the next end-of-text.
    assert texts[0] == tokenizer.decode(PATTERN[1:])


# ---- the loop itself, on the numpy reference model (no framework)


@pytest.fixture(scope="module")
def ref_model():
    return ReferenceModel(CONFIG, init_params(CONFIG, seed=3))


def test_reference_model_cache_and_full_forward_agree(ref_model):
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]]  # one beyond block_size
    for settings in SETTINGS.values():
        a = generate(ref_model, prompts, 20, use_cache=True, **settings)
        b = generate(ref_model, prompts, 20, use_cache=False, **settings)
        assert a == b and [len(r) for r in a] == [20, 20]


def test_array_prompts_and_edge_cases(ref_model):
    tokens = np.array([[1, 2, 3], [4, 5, 6]])
    assert generate(ref_model, tokens, 5) == generate(ref_model, tokens.tolist(), 5)
    assert generate(ref_model, tokens, 0) == [[], []]
    assert generate(ref_model, tokens, 0, return_stats=True) == ([[], []], [[], []])
    unseeded = generate(ref_model, tokens, 3, temperature=1.0)  # seed None: fresh entropy, still valid ids
    assert all(0 <= t < CONFIG.vocab_size for row in unseeded for t in row)


@pytest.mark.parametrize(
    "prompts, kwargs, message",
    [
        ([[1], []], {}, "prompt 1 is empty"),
        ([], {}, "no prompts"),
        ([[1, 64]], {}, r"token ids \[64\] outside the vocabulary 0..63"),
        ([[1]], dict(max_new_tokens=-1), "max_new_tokens=-1"),
        ([[1]], dict(stop_token=99), "stop_token=99"),
        ([[1]], dict(temperature=1.0, seed=-3), "seed=-3"),
        ([[1]], dict(temperature=-1.0), "temperature=-1.0"),
        ([[1]], dict(temperature=1.0, top_p=2.0), "top_p=2.0"),
    ],
)
def test_invalid_arguments_raise(ref_model, prompts, kwargs, message):
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(ref_model, prompts, **kwargs)
