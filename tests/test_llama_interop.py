"""Hugging Face Llama parity: randomly initialised `LlamaForCausalLM` models (GQA, tied and untied heads,
a non-default rope_theta), no download. Logits of both backends within 1e-4 of transformers', greedy
generation identical, export -> import exact, an exported folder loads with `from_pretrained`, and what
we do not compute is refused in one line naming the field.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.convert.huggingface import export_hf_folder, import_hf_folder, load_hf_folder
from core.convert.llama import config_from_hf_llama, from_hf_llama, to_hf_llama
from core.data.tokenizer import train_tokenizer
from core.generate.generation import generate
from core.model import reference
from core.model.config import GPTConfig, preset
from core.model.params import count_params, init_params
from core.train.checkpoint import Checkpoint
from core.train.meta import CheckpointMeta
from tests.test_interop import TEXTS

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

# (num_key_value_heads, tie_word_embeddings, rope_theta): GQA 4/2, multi-query, plain multi-head
CASES = [(2, True, 10000.0), (1, False, 500.0), (4, False, 10000.0)]


def hf_llama(n_kv_head: int, tie: bool, theta: float, seed: int = 0):
    """A small random LlamaForCausalLM; its RMSNorm gains are made random too (the init sets them to one,
    which would hide a gain mapped to the wrong place)."""
    config = transformers.LlamaConfig(
        vocab_size=61, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=n_kv_head, max_position_embeddings=24, rms_norm_eps=1e-5, rope_theta=theta,
        tie_word_embeddings=tie, bos_token_id=None, eos_token_id=None, pad_token_id=None,  # no id is special
    )  # fmt: skip
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def ours(model) -> tuple[GPTConfig, dict[str, np.ndarray]]:
    return from_hf_llama({k: v.numpy() for k, v in model.state_dict().items()}, model.config.to_dict())


@pytest.fixture(scope="module", params=CASES, ids=["gqa-tied", "mqa-untied-theta500", "mha-untied"])
def hf(request):
    model = hf_llama(*request.param)
    return (model, *ours(model))


def test_config_maps_field_for_field(hf):
    model, config, _ = hf
    c = model.config
    assert config == GPTConfig(
        vocab_size=61, block_size=24, n_layer=2, n_head=4, n_embd=32, n_kv_head=c.num_key_value_heads, n_inner=40,
        bias=False, tie_embeddings=c.tie_word_embeddings, layer_norm_eps=1e-5, position="rope",
        rope_theta=c.rope_parameters["rope_theta"], norm="rmsnorm", mlp="swiglu", dropout=0.0,
    )  # fmt: skip


def test_logits_equal_transformers(hf, backend):
    model, config, params = hf
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (2, config.block_size))
    with torch.no_grad():
        expected = model(torch.from_numpy(tokens)).logits.numpy()
    assert np.abs(backend.build(config, params).logits(tokens) - expected).max() < 1e-4
    assert np.abs(reference.logits(config, params, tokens) - expected).max() < 1e-4


def test_greedy_generation_equals_transformers(hf, backend):
    model, config, params = hf
    prompts = np.random.default_rng(1).integers(1, config.vocab_size, (2, 5))
    n_new = config.block_size - prompts.shape[1]
    with torch.no_grad():
        out = model.generate(
            torch.from_numpy(prompts), attention_mask=torch.ones(prompts.shape, dtype=torch.long),
            max_new_tokens=n_new, do_sample=False, pad_token_id=0,  # (with an eos id, min_new_tokens would ban it)
        )  # fmt: skip
    assert generate(backend.build(config, params), prompts, n_new, temperature=0.0) == out[:, 5:].tolist()


def test_export_then_import_is_exact_and_loads_in_transformers(hf, tmp_path):
    model, config, params = hf
    state, hf_config = to_hf_llama(config, params)
    again_config, again = from_hf_llama(state, hf_config)
    assert again_config == config and sorted(again) == sorted(params)
    assert all(np.array_equal(again[k], params[k]) for k in params)
    original = {k: v.numpy() for k, v in model.state_dict().items()}
    assert all(np.array_equal(state[k], original[k]) for k in state)  # key for key, value for value

    export_hf_folder(Checkpoint(config, params, CheckpointMeta()), tmp_path)
    folder_config, folder_params = load_hf_folder(tmp_path)
    assert folder_config == config and all(np.array_equal(folder_params[k], params[k]) for k in params)
    loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path).float().eval()
    tokens = np.arange(20).reshape(2, 10) % config.vocab_size
    with torch.no_grad():
        np.testing.assert_array_equal(
            loaded(torch.from_numpy(tokens)).logits.numpy(), model(torch.from_numpy(tokens)).logits.numpy()
        )


def test_trained_tokenizer_travels_with_a_llama_export(tmp_path):
    tokenizer = train_tokenizer("bpe", TEXTS, vocab_size=300)
    config = preset("llama-tiny", vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=32, block_size=16)
    checkpoint = Checkpoint(config, init_params(config, seed=2), CheckpointMeta(), tokenizer.to_json())
    export_hf_folder(checkpoint, tmp_path / "hf")
    imported, note = import_hf_folder(tmp_path / "hf")
    assert "byte-level BPE" in note and imported.tokenizer_json == checkpoint.tokenizer_json
    assert imported.config == config and imported.meta.source == "huggingface LlamaForCausalLM"
    hf_tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path / "hf")
    assert hf_tokenizer("def f(x):")["input_ids"] == tokenizer.encode("def f(x):")


def test_smollm_preset_has_smollm_135m_shape():
    """Our preset's parameter count equals transformers' for SmolLM-135M's config.json, built without weights."""
    config = preset("smollm-135m")
    hf_config = transformers.LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=2048, tie_word_embeddings=True,
    )  # fmt: skip
    assert config.mlp_hidden == 1536
    assert config_from_hf_llama(hf_config.to_dict()) == config.replace(layer_norm_eps=hf_config.rms_norm_eps)
    with torch.device("meta"):  # shapes only: no memory for 135M weights
        model = transformers.LlamaForCausalLM(hf_config)
    assert count_params(config) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "change, field",
    [
        ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}}, "rope_type='llama3'"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_type='linear'"),
        ({"attention_bias": True}, "attention_bias=True"),
        ({"mlp_bias": True}, "mlp_bias=True"),
        ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
        ({"sliding_window": 4096}, "sliding_window=4096"),
        ({"head_dim": 16}, "head_dim=16"),
    ],
)
def test_what_we_do_not_compute_is_refused_in_one_line(change, field):
    hf_config = hf_llama(2, True, 10000.0).config.to_dict()
    if "rope_scaling" in change:
        hf_config.pop("rope_parameters")
    with pytest.raises(ValueError, match=field.replace("(", r"\(")) as info:
        config_from_hf_llama({**hf_config, **change})
    assert "\n" not in str(info.value)


def test_incomplete_state_and_mixed_configs_are_refused():
    model = hf_llama(2, False, 10000.0)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    del state["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(ValueError, match="up_proj.weight.*missing"):
        from_hf_llama(state, model.config.to_dict())
    mixed = GPTConfig(vocab_size=50, n_embd=16, n_head=4, position="rope")  # RoPE with LayerNorm and GELU
    with pytest.raises(ValueError, match="norm='layernorm' has no place in LlamaForCausalLM"):
        to_hf_llama(mixed, init_params(mixed))
