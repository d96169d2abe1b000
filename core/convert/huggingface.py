"""Hugging Face GPT-2 <-> our parameters, as plain numpy dicts (no framework, no `transformers`), and the
Hugging Face folders of both families this project maps: GPT-2 here, Llama in core/convert/llama.py.

Our parameter names are GPT-2's, and our Linear weights are stored (in, out) exactly as Hugging
Face's `Conv1D` stores them, so the mapping is only about names and config fields:

    transformer.wte.weight, transformer.h.{i}.attn.c_attn.weight, ...  <->  wte.weight, h.{i}.attn.c_attn.weight
    lm_head.weight            <->  nothing when tied (GPT-2, the head is wte), lm_head.weight when untied

    n_positions (older files: n_ctx) <-> block_size     n_embd, n_layer, n_head, vocab_size <-> the same names
    layer_norm_epsilon <-> layer_norm_eps               tie_word_embeddings <-> tie_embeddings
    resid_pdrop (= embd_pdrop = attn_pdrop on export) <-> dropout (used in training only)

What GPT-2 fixes and we check on import: the activation is GELU's tanh form (`gelu_new`), the MLP is
4 * n_embd wide, attention scores are scaled by 1/sqrt(head_size) and by nothing else. Hugging Face's
GPT-2 always has biases; a model of ours with `bias=False` is exported with zero biases (the same
function) and `"bias": false` in config.json, which the import reads back to drop them again.
Older files also hold the causal-mask buffers `attn.bias` / `attn.masked_bias`: they are not
parameters and are skipped.

A Hugging Face folder is `config.json` + `model.safetensors` (or shards with an index) +
`tokenizer.json` (+ `tokenizer_config.json`, `special_tokens_map.json`); `export_hf_folder` writes
one that `GPT2LMHeadModel.from_pretrained` and `PreTrainedTokenizerFast.from_pretrained` load, and
`import_hf_folder` reads one into a `Checkpoint` of ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from core.convert.llama import from_hf_llama, is_llama, to_hf_llama
from core.convert.quantize import dequantize_params
from core.data.direction import FORWARD, require_direction
from core.data.tokenizer import EOT, tokenizer_from_json
from core.model.config import GPTConfig
from core.model.params import check_params, param_shapes
from core.train.checkpoint import Checkpoint, apply_umask_modes
from core.train.meta import CheckpointMeta

PREFIX = "transformer."  # GPT2LMHeadModel's prefix for everything but lm_head
MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not parameters
ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both are GELU's tanh approximation, which we compute
LINEAR_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def config_from_hf(hf: dict) -> GPTConfig:
    """Our `GPTConfig` from a GPT-2 config.json dict; anything GPT-2-like we do not compute is a ValueError."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise ValueError(
            f"model_type {hf['model_type']!r} is not GPT-2 or Llama: only GPT2LMHeadModel and "
            "LlamaForCausalLM checkpoints map"
        )
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation_function {activation!r} is not supported: our GPT computes gelu_new only")
    n_embd = int(hf.get("n_embd", 768))
    if hf.get("n_inner") not in (None, 4 * n_embd):
        raise ValueError(f"n_inner={hf['n_inner']} is not supported: the MLP is 4 * n_embd = {4 * n_embd} wide")
    for key, expected in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                          ("add_cross_attention", False)):  # fmt: skip
        if bool(hf.get(key, expected)) != expected:
            raise ValueError(f"{key}={hf[key]} is not supported: GPT-2 as we compute it has {key}={expected}")
    dropouts = {float(hf.get(k, 0.1)) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}  # HF default 0.1
    return GPTConfig(
        vocab_size=int(hf.get("vocab_size", 50257)),
        block_size=int(hf.get("n_positions", hf.get("n_ctx", 1024))),
        n_layer=int(hf.get("n_layer", 12)),
        n_head=int(hf.get("n_head", 12)),
        n_embd=n_embd,
        dropout=max(dropouts),  # we have one rate where GPT-2 has three; they are equal in every released model
        bias=bool(hf.get("bias", True)),  # our own key, written only by export of a bias=False model
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
    )


def from_hf_gpt2(state_dict: dict, config_dict: dict) -> tuple[GPTConfig, dict[str, np.ndarray]]:
    """A `GPT2LMHeadModel` state dict (numpy arrays, or anything `np.asarray` takes) and its config dict
    -> our `GPTConfig` and float32 params with `core.model.params` names."""
    config = config_from_hf(config_dict)
    params: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        name = key.removeprefix(PREFIX)
        if name.endswith(MASK_BUFFERS):
            continue
        params[name] = np.array(value, dtype=np.float32)  # a copy: the caller's arrays are left alone
    head = params.pop("lm_head.weight", None)
    if config.tie_embeddings:
        # GPT-2 ties the output head to wte; a state dict from `model.state_dict()` still lists it.
        if head is not None and not np.array_equal(head, params.get("wte.weight")):
            raise ValueError("config.json ties the embeddings but lm_head.weight differs from wte.weight: "
                             "set tie_word_embeddings to false in config.json to keep both")  # fmt: skip
    elif head is None:
        raise ValueError("config.json unties the embeddings (tie_word_embeddings false) but there is no lm_head.weight")
    else:
        params["lm_head.weight"] = head
    if not config.bias:
        biases = [n for n in params if n.endswith(".bias")]
        nonzero = [n for n in biases if np.any(params[n])]
        if nonzero:
            raise ValueError(f'config.json says "bias": false but {nonzero[:3]} are not zero: remove that key')
        for name in biases:
            del params[name]
    check_params(config, params)
    return config, params


def to_hf_gpt2(config: GPTConfig, params: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    """Our config and params (float32 or int8, which are dequantized) -> a `GPT2LMHeadModel` state dict
    (`model.load_state_dict(...)` takes it after `torch.from_numpy`) and a config.json dict."""
    if not config.causal:
        raise ValueError("this model is bidirectional (causal=False): GPT-2 is causal, so it cannot be exported as one")
    if config.mlp_hidden != 4 * config.n_embd:
        raise ValueError(f"n_inner={config.n_inner} cannot be exported: GPT-2's MLP is 4 * n_embd wide (n_inner=0)")
    params = dequantize_params(params)
    check_params(config, params)
    state: dict[str, np.ndarray] = {}
    for name, shape in _hf_shapes(config).items():
        value = params.get(name)
        if value is None:  # bias=False: Hugging Face's GPT-2 has every bias, zero is the same function
            value = np.zeros(shape, dtype=np.float32)
        state[PREFIX + name] = np.ascontiguousarray(value, dtype=np.float32)
    # GPT2LMHeadModel lists lm_head.weight even when tied (it is wte then).
    state["lm_head.weight"] = state[PREFIX + "wte.weight"] if config.tie_embeddings else params["lm_head.weight"]
    hf = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "layer_norm_epsilon": config.layer_norm_eps,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "tie_word_embeddings": config.tie_embeddings,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "initializer_range": 0.02,
        "bos_token_id": None,
        "eos_token_id": None,
        "use_cache": True,
        "dtype": "float32",
    }
    if not config.bias:
        hf["bias"] = False  # read back by config_from_hf: the zero biases are dropped again
    return state, hf


def _hf_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """The shapes of GPT2Model's parameters: ours with bias=True (Hugging Face always has biases)."""
    return {n: s for n, s in param_shapes(config.replace(bias=True)).items() if n != "lm_head.weight"}


# ---- folders


def load_hf_folder(path: str | Path) -> tuple[GPTConfig, dict[str, np.ndarray]]:
    """Config and params from a Hugging Face GPT-2 or Llama folder: config.json + model.safetensors (or shards)."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {folder}: pass a Hugging Face model folder (save_pretrained)")
    config_dict = json.loads((folder / "config.json").read_text())
    state: dict[str, np.ndarray] = {}
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    elif index.is_file():
        files = [folder / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    else:
        hint = " (pytorch_model.bin found: re-save it with save_pretrained(safe_serialization=True))"
        raise FileNotFoundError(
            f"no model.safetensors in {folder}" + (hint if (folder / "pytorch_model.bin").exists() else "")
        )
    for file in files:
        try:
            state.update(load_file(str(file)))
        except Exception as err:  # safetensors' numpy loader cannot read bfloat16, for one
            raise ValueError(f"cannot read {file} as numpy ({err}): save the model in float32 or float16") from None
    return (from_hf_llama if is_llama(config_dict) else from_hf_gpt2)(state, config_dict)


def _tokenizer_from_hf_folder(folder: Path, vocab_size: int) -> tuple[str | None, str]:
    """Our tokenizer JSON from a Hugging Face folder (tokenizer.json, or vocab.json + merges.txt), and a note."""
    if (folder / "tokenizer.json").is_file():
        text = (folder / "tokenizer.json").read_text(encoding="utf-8")
    elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

        tk = Tokenizer(models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt")))
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's byte-level scheme
        tk.decoder = decoders.ByteLevel()
        tk.add_special_tokens([AddedToken(EOT, special=True)])  # already in GPT-2's vocab.json: keeps its id
        text = tk.to_str()
    else:
        return None, f"no tokenizer.json (or vocab.json + merges.txt) in {folder}: the model is imported without one"
    try:
        tokenizer = tokenizer_from_json(text)
    except ValueError as err:
        return None, f"the tokenizer in {folder} was not imported ({err})"
    if tokenizer.kind != "bpe" or tokenizer.vocab_size > vocab_size:
        return None, f"the tokenizer in {folder} ({tokenizer.vocab_size} ids) does not fit the model's {vocab_size}"
    return tokenizer.to_json(), f"tokenizer: byte-level BPE, {tokenizer.vocab_size} ids, end-of-text {EOT!r}"


def import_hf_folder(path: str | Path) -> tuple[Checkpoint, str]:
    """A `Checkpoint` of ours (weights, tokenizer, meta) from a Hugging Face GPT-2 or Llama folder, and a note on the
    tokenizer. It has no optimizer state: it generates and chats, it does not resume training."""
    folder = Path(path)
    config, params = load_hf_folder(folder)
    tokenizer_json, note = _tokenizer_from_hf_folder(folder, config.vocab_size)
    kind = "LlamaForCausalLM" if config.position == "rope" else "GPT2LMHeadModel"
    meta = CheckpointMeta(imported_from=str(folder), source=f"huggingface {kind}")
    return Checkpoint(config, params, meta, tokenizer_json), note


def hf_class(config: GPTConfig) -> str:
    """The Hugging Face class a config exports as: any Llama option makes it Llama (which checks the rest)."""
    gpt2 = config.position == "learned" and config.norm == "layernorm" and config.mlp == "gelu"
    return "GPT2LMHeadModel" if gpt2 and config.kv_heads == config.n_head else "LlamaForCausalLM"


def export_hf_folder(checkpoint: Checkpoint, out_dir: str | Path) -> Path:
    """Write `checkpoint` as a Hugging Face GPT-2 folder, or a Llama one for a model of Llama options
    (`hf_class` says which): config.json, model.safetensors and, when the
    checkpoint has a byte-level BPE tokenizer, tokenizer.json + tokenizer_config.json +
    special_tokens_map.json. An int8 checkpoint is dequantized (Hugging Face's GPT-2 is float).
    A backward model (`train --reverse`) is refused: `generate` would feed it text left to right."""
    require_direction(checkpoint.meta.direction, FORWARD, "export-hf (Hugging Face generates left to right)")
    tokenizer = tokenizer_from_json(checkpoint.tokenizer_json) if checkpoint.tokenizer_json else None
    if tokenizer is not None and tokenizer.kind != "bpe":
        raise ValueError(
            f"the checkpoint's tokenizer is {tokenizer.kind!r}: Hugging Face's tokenizer.json holds byte-level BPE "
            "only; train with --tokenizer bpe to export"
        )
    if hf_class(checkpoint.config) == "LlamaForCausalLM":
        state, hf = to_hf_llama(checkpoint.config, dequantize_params(checkpoint.params))
    else:
        state, hf = to_hf_gpt2(checkpoint.config, checkpoint.params)
        if checkpoint.config.tie_embeddings:
            del state["lm_head.weight"]  # tied: stored once, as GPT-2's own files do
    if tokenizer is not None:
        hf["bos_token_id"] = hf["eos_token_id"] = tokenizer.eot_id
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})  # "pt": what from_pretrained expects
    (out / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None:
        (out / "tokenizer.json").write_text(tokenizer.to_json(), encoding="utf-8")
        special = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
        tokenizer_config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": checkpoint.config.block_size,
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": False,
            **special,
        }
        (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
        (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    apply_umask_modes(out / "model.safetensors")  # safetensors writes 0600; the folder is meant to be shared
    return out
