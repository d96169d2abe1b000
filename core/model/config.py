"""Model and training settings: the two frozen dataclasses every other module reads.

`GPTConfig` describes the network (nanoGPT's field names; GPT-2's architecture by default, with
options for the Llama family's: rotary positions, RMSNorm, a SwiGLU MLP, grouped-query attention). `TrainConfig`
describes how it is trained. Both check their values on construction, so a bad setting fails at
once with a message that names the value and the fix, never deep inside a backend.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 256  # number of distinct token ids the model reads and predicts
    block_size: int = 16  # longest context the model sees (positions 0 .. block_size-1)
    n_layer: int = 2  # number of transformer blocks
    n_head: int = 4  # attention heads per block; n_embd must divide evenly between them
    n_embd: int = 32  # width of the residual stream
    dropout: float = 0.0  # dropout probability during training (0 turns it off)
    bias: bool = True  # biases in Linear and LayerNorm layers, as in GPT-2
    tie_embeddings: bool = True  # the output head reuses the token embedding matrix (GPT-2)
    layer_norm_eps: float = 1e-5  # LayerNorm epsilon, as in GPT-2 and PyTorch
    causal: bool = True  # attend only to earlier positions (GPT); False sees the whole sequence (BERT)
    position: str = "learned"  # learned: a wpe table (GPT-2); rope: rotary embeddings of q and k (Llama)
    rope_theta: float = 10000.0  # RoPE base: pair i of a head turns by position * rope_theta**(-2i/head_size)
    norm: str = "layernorm"  # layernorm (GPT-2) or rmsnorm (Llama: no mean, no bias)
    mlp: str = "gelu"  # gelu: up, GELU, down (GPT-2); swiglu: silu(gate) * up, down (Llama)
    n_inner: int = 0  # MLP hidden width; 0: 4 * n_embd for gelu, Llama's rounding of 8 * n_embd / 3 for swiglu
    n_kv_head: int = 0  # key/value heads (grouped-query attention); 0: n_head, 1: multi-query

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}={value!r} is invalid: use a positive integer")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: "
                f"choose n_embd as a multiple of n_head (e.g. {self.n_head * max(1, self.n_embd // self.n_head)})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} is invalid: use a value in [0, 1)")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps={self.layer_norm_eps} is invalid: use a small positive number")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: use one of {', '.join(choices)}")
        for name in ("n_inner", "n_kv_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}={value!r} is invalid: use 0 (the default) or a positive integer")
        if self.n_head % self.kv_heads != 0:
            raise ValueError(
                f"n_kv_head={self.n_kv_head} does not divide n_head={self.n_head}: use a divisor of n_head "
                f"(1 is multi-query, {self.n_head} is ordinary multi-head attention)"
            )
        if self.position == "rope":
            if self.head_size % 2:
                raise ValueError(
                    f"position='rope' needs an even head size, not n_embd/n_head={self.head_size}: "
                    "change n_embd or n_head"
                )
            if not (math.isfinite(self.rope_theta) and self.rope_theta > 1):
                raise ValueError(f"rope_theta={self.rope_theta} is invalid: use a base above 1, such as 10000")

    @property
    def head_size(self) -> int:
        """Width of one attention head."""
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """Number of key/value heads: n_kv_head, or n_head when it is 0; each serves n_head / kv_heads queries."""
        return self.n_kv_head or self.n_head

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the feed-forward layer: n_inner if set, else 4 * n_embd (GPT-2) for gelu and, for
        swiglu, Llama's: two thirds of 4 * n_embd (three matrices cost what GELU's two do at 4x), rounded up
        to a multiple of 256."""
        if self.n_inner:
            return self.n_inner
        if self.mlp == "gelu":
            return 4 * self.n_embd
        return LLAMA_MULTIPLE_OF * math.ceil(int(2 * 4 * self.n_embd / 3) / LLAMA_MULTIPLE_OF)

    def replace(self, **changes: object) -> GPTConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> GPTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig fields {unknown}: valid fields are {sorted(known)}")
        return cls(**values)


# The allowed values of the architecture options (the first is GPT-2's, the default).
CHOICES: dict[str, tuple[str, ...]] = {
    "position": ("learned", "rope"),
    "norm": ("layernorm", "rmsnorm"),
    "mlp": ("gelu", "swiglu"),
}
LLAMA_MULTIPLE_OF = 256  # Llama rounds its SwiGLU hidden width up to a multiple of this
LLAMA = dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False)  # Llama's choices for every option

# Named model sizes. The vocabulary of all but `gpt2` is set by the tokenizer at run time.
PRESETS: dict[str, dict] = {
    "demo": dict(n_layer=2, n_head=4, n_embd=32, block_size=16),  # the classic teaching example
    "tiny": dict(n_layer=4, n_head=4, n_embd=256, block_size=256),
    "small": dict(n_layer=6, n_head=8, n_embd=512, block_size=256),  # ~23M params at vocab 8192 (27M untied)
    "medium": dict(n_layer=12, n_head=8, n_embd=512, block_size=256),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
    # "tiny" with Llama's architecture and two query heads per key/value head
    "llama-tiny": dict(n_layer=4, n_head=4, n_kv_head=2, n_embd=256, block_size=256, **LLAMA),
    # the shape of HuggingFaceTB/SmolLM-135M (its config.json): 30 layers, GQA 9/3, tied embeddings, and
    # Llama's rounding gives its intermediate_size of 1536
    "smollm-135m": dict(n_layer=30, n_head=9, n_kv_head=3, n_embd=576, block_size=2048, vocab_size=49152, **LLAMA),
}


def preset(name: str, **overrides: object) -> GPTConfig:
    """The `GPTConfig` of a named preset, with any fields overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return GPTConfig(**{**PRESETS[name], **overrides})


DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is optimised. Defaults follow nanoGPT."""

    lr: float = 1e-3  # peak learning rate, reached after warmup
    min_lr: float = 1e-4  # learning rate at the end of the decay
    warmup_steps: int = 100  # linear warmup from 0 to lr
    schedule: str = "cosine"  # decay after warmup: cosine, linear or constant
    steps: int = 2000  # optimizer steps in the run
    decay_steps: int = 0  # steps the learning rate decays over, warmup included (0: all of --steps); min_lr after
    batch_size: int = 16  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches summed into one optimizer step
    weight_decay: float = 0.1  # decoupled AdamW decay, on 2-D weights only
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay
    eps: float = 1e-8  # AdamW denominator epsilon
    grad_clip: float = 1.0  # clip the global gradient norm to this (0 turns it off)
    seed: int = 1337  # seeds initialisation, batches, dropout and sampling
    eval_every: int = 100  # evaluate (validation loss, sample) and checkpoint every this many steps
    eval_batches: int = 20  # validation batches per evaluation
    patience: int = 0  # stop after this many evaluations without a better validation loss (0: never)
    dtype: str = "float32"  # compute precision: float32, bfloat16 or float16 (where the device has it)
    objective: str = "clm"  # clm: predict the next token; mlm: fill masked tokens (bidirectional model)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "eval_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}={value!r} is invalid: use a positive integer")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr={self.lr} is invalid: use a positive learning rate such as 1e-3")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr={self.min_lr} is invalid: use a value between 0 and lr={self.lr}")
        if self.decay_steps < 0:
            raise ValueError(f"decay_steps={self.decay_steps} is invalid: use 0 (all of --steps) or more")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps} is invalid: use 0 or more")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"schedule={self.schedule!r} is invalid: use cosine, linear or constant")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)} is invalid: use a value in [0, 1)")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay} is invalid: use 0 or more")
        if self.eps <= 0:
            raise ValueError(f"eps={self.eps} is invalid: use a small positive number such as 1e-8")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip={self.grad_clip} is invalid: use 0 (off) or a positive norm")
        if self.patience < 0:
            raise ValueError(f"patience={self.patience} is invalid: use 0 (off) or a number of evaluations")
        if self.objective not in ("clm", "mlm"):
            raise ValueError(f"objective={self.objective!r} is invalid: use clm (next token) or mlm (masked tokens)")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} is invalid: use one of {', '.join(DTYPES)}")

    def replace(self, **changes: object) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def field_help(cls: type) -> dict[str, str]:
    """Each field's inline comment in this file, so command-line help is written once, beside the field."""
    source = inspect.getsource(cls)
    return dict(re.findall(r"^\s+(\w+): [^#\n]+#\s*(.+)$", source, flags=re.MULTILINE))
