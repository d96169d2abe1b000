"""Hugging Face GPT-2 parity (minGPT's test): the same weights give the same logits and the same greedy
tokens in `transformers` and in both our backends; export then import is exact; an exported checkpoint
loads and generates in `transformers`. Every model is built from a config with random weights: no download."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.convert.huggingface import export_hf_folder, from_hf_gpt2, import_hf_folder, load_hf_folder, to_hf_gpt2
from core.data.tokenizer import tokenizer_from_json, train_tokenizer
from core.generate.generation import generate
from core.model import reference
from core.model.config import GPTConfig
from core.model.params import init_params
from core.train.checkpoint import Checkpoint, load_checkpoint
from core.train.meta import CheckpointMeta

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i, i * i)\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n",
] * 4


def hf_model(tie: bool = True, seed: int = 0):
    """A small random GPT2LMHeadModel whose biases and LayerNorms are random too (the default init zeroes them,
    which would hide a bias mapped to the wrong place)."""
    config = transformers.GPT2Config(
        vocab_size=97, n_positions=24, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0,
        tie_word_embeddings=tie,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def hf():
    model = hf_model()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    config, params = from_hf_gpt2(state, model.config.to_dict())
    return model, config, params


def test_config_maps_field_for_field(hf):
    model, config, _ = hf
    assert config == GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=4, n_embd=32, dropout=0.1)


def test_logits_equal_hugging_face(hf, backend):
    model, config, params = hf
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (2, config.block_size))
    with torch.no_grad():
        expected = model(torch.from_numpy(tokens)).logits.numpy()
    ours = backend.build(config, params).logits(tokens)
    assert np.abs(ours - expected).max() < 1e-4


def test_greedy_generation_equals_hugging_face(hf, backend):
    model, config, params = hf
    prompts = np.random.default_rng(1).integers(0, config.vocab_size, (2, 5))
    n_new = config.block_size - prompts.shape[1]  # up to the context window
    with torch.no_grad():
        out = model.generate(
            torch.from_numpy(prompts), attention_mask=torch.ones(prompts.shape, dtype=torch.long),
            max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=0,
        )  # fmt: skip
    expected = out[:, prompts.shape[1] :].tolist()
    assert generate(backend.build(config, params), prompts, n_new, temperature=0.0) == expected


def test_state_dict_details():
    model = hf_model(tie=False, seed=1)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    config, params = from_hf_gpt2(state, model.config.to_dict())
    assert not config.tie_embeddings and np.array_equal(params["lm_head.weight"], state["lm_head.weight"])
    # Older files hold the causal-mask buffers and may lack the `transformer.` prefix.
    old = {k.removeprefix("transformer."): v for k, v in state.items()}
    old["h.0.attn.bias"], old["h.0.attn.masked_bias"] = np.tril(np.ones((1, 1, 24, 24))), np.array(-1e4)
    assert all(np.array_equal(v, params[k]) for k, v in from_hf_gpt2(old, model.config.to_dict())[1].items())
    # A tied config with a different lm_head is ambiguous; an untied one without lm_head is incomplete.
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        from_hf_gpt2(state, {**model.config.to_dict(), "tie_word_embeddings": True})
    del state["lm_head.weight"]
    with pytest.raises(ValueError, match="no lm_head.weight"):
        from_hf_gpt2(state, model.config.to_dict())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"activation_function": "relu"}, "activation_function"),
        ({"n_inner": 100}, "n_inner"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ({"model_type": "llama"}, "not GPT-2"),
    ],
)
def test_unsupported_configs_are_refused(hf, change, message):
    model, _, _ = hf
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        from_hf_gpt2(state, {**model.config.to_dict(), **change})


@pytest.mark.parametrize("changes", [{}, {"tie_embeddings": False}, {"bias": False}])
def test_export_then_import_is_exact(changes, tmp_path):
    config = GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=8, **changes)
    params = init_params(config, seed=3)
    state, hf_config = to_hf_gpt2(config, params)
    again_config, again = from_hf_gpt2(state, hf_config)
    assert again_config == config and again.keys() == params.keys()
    assert all(np.array_equal(again[k], params[k]) for k in params)
    # The same through a folder on disk, and into a checkpoint of ours.
    export_hf_folder(Checkpoint(config, params, CheckpointMeta()), tmp_path)
    folder_config, folder_params = load_hf_folder(tmp_path)
    assert folder_config == config and all(np.array_equal(folder_params[k], params[k]) for k in params)


def test_bias_free_model_exports_as_the_same_function(tmp_path):
    config = GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8, bias=False)
    params = init_params(config, seed=4)
    export_hf_folder(Checkpoint(config, params, CheckpointMeta()), tmp_path)
    model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    tokens = np.arange(16).reshape(2, 8) % 50
    with torch.no_grad():
        hf_logits = model(torch.from_numpy(tokens)).logits.numpy()
    assert np.abs(hf_logits - reference.logits(config, params, tokens)).max() < 1e-5


@pytest.fixture(scope="module")
def bpe_checkpoint():
    tokenizer = train_tokenizer("bpe", TEXTS, vocab_size=300)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16)
    return Checkpoint(config, init_params(config, seed=5), CheckpointMeta(step=7), tokenizer.to_json())


def test_exported_checkpoint_generates_in_transformers(bpe_checkpoint, backends, tmp_path):
    export_hf_folder(bpe_checkpoint, tmp_path)
    model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    hf_tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path)
    ours = tokenizer_from_json(bpe_checkpoint.tokenizer_json)
    text = "def area(self):\n    return self.x * self.y  # ünïcode"
    assert hf_tokenizer(text)["input_ids"] == ours.encode(text)
    assert hf_tokenizer.decode(ours.encode(text)) == text
    assert hf_tokenizer.eos_token_id == ours.eot_id == model.config.eos_token_id

    prompt = hf_tokenizer("def ", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0)
    ids = prompt["input_ids"].tolist()
    mine = backends["torch"].build(bpe_checkpoint.config, bpe_checkpoint.params)
    assert out[0, len(ids[0]) :].tolist() == generate(mine, ids, 12, temperature=0.0)[0]


def test_import_makes_a_checkpoint_that_generates(bpe_checkpoint, tmp_path):
    export_hf_folder(bpe_checkpoint, tmp_path / "hf")
    checkpoint, note = import_hf_folder(tmp_path / "hf")
    assert "byte-level BPE" in note and checkpoint.tokenizer_json == bpe_checkpoint.tokenizer_json
    assert checkpoint.config == bpe_checkpoint.config
    assert all(np.array_equal(checkpoint.params[k], v) for k, v in bpe_checkpoint.params.items())
    # Without tokenizer.json, GPT-2's vocab.json + merges.txt are used.
    vocab_merges = json.loads(bpe_checkpoint.tokenizer_json)["model"]
    (tmp_path / "hf" / "tokenizer.json").unlink()
    (tmp_path / "hf" / "vocab.json").write_text(json.dumps(vocab_merges["vocab"]))
    merges = [" ".join(m) if isinstance(m, list) else m for m in vocab_merges["merges"]]
    (tmp_path / "hf" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    checkpoint, note = import_hf_folder(tmp_path / "hf")
    text = "for i in range(3):\n    print(i)"
    assert tokenizer_from_json(checkpoint.tokenizer_json).encode(text) == tokenizer_from_json(
        bpe_checkpoint.tokenizer_json
    ).encode(text)


def test_char_tokenizer_is_refused(tmp_path):
    tokenizer = train_tokenizer("char", TEXTS)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8)
    with pytest.raises(ValueError, match="byte-level BPE only"):
        export_hf_folder(Checkpoint(config, init_params(config), CheckpointMeta(), tokenizer.to_json()), tmp_path)


def test_backward_model_is_refused(tmp_path):
    config = GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8)
    with pytest.raises(ValueError, match="needs a forward model.*train one without --reverse"):
        export_hf_folder(Checkpoint(config, init_params(config), CheckpointMeta(direction="backward")), tmp_path)
    assert not any(tmp_path.iterdir())  # refused before writing anything


def test_bidirectional_model_is_refused():
    config = GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8, causal=False)
    with pytest.raises(ValueError, match="bidirectional"):
        to_hf_gpt2(config, init_params(config))


def test_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_folder(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_hf_folder(tmp_path)


def test_cli_round_trip(bpe_checkpoint, tmp_path, capsys):
    import train_next_word_prediction as cli
    from core.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "run" / "checkpoints" / "last", bpe_checkpoint)
    assert cli.main(["export-hf", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 0
    assert cli.main(["import-hf", "--model", str(tmp_path / "hf"), "--out", str(tmp_path / "imported")]) == 0
    imported = load_checkpoint(tmp_path / "imported")
    assert all(np.array_equal(imported.params[k], v) for k, v in bpe_checkpoint.params.items())
    args = ["generate", "--checkpoint", str(tmp_path / "imported"), "--backend", "torch", "--prompt", "def "]
    assert cli.main([*args, "--max-new-tokens", "5", "--dtype", "bfloat16"]) == 0
    assert cli.main(["import-hf", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "no config.json" in capsys.readouterr().err
