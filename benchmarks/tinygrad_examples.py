"""tinygrad's own GPT-2 examples at our configuration, timed in the same run (`--tinygrad-examples DIR`).

The issue sets the tinygrad targets against `examples/llm.c/train_gpt2.py` (training) and
`examples/gpt2.py` (KV-cache generation) from tinygrad's repository. Their code is not part of this
project: this module imports their model classes from a tinygrad checkout that the user names
(`git clone https://github.com/tinygrad/tinygrad`), builds them with random weights at our
configuration, and drives them the way their `__main__` blocks do, taking turns with our tinygrad
model on the same batch and prompts (so the ratios are side by side):

- training: their `GPT` (embeddings tied to the head), their `AdamW` over every parameter, one
  `TinyJit` step of forward, `sparse_categorical_crossentropy`, backward and `schedule_step`;
- generation: their `Transformer` with its KV cache and jitted one-token step (argmax sampling on the
  device), the token fed as a bound `Variable` at batch 1 and as a new Tensor otherwise, as their
  `GPT2.generate` does; one model per batch size, since its cache and JIT are sized by the first call.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import interleave
from benchmarks.decode import lengths
from core.generate.generation import generate as our_generate
from core.model.config import GPTConfig


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(
    root: Path,
    ours,
    config: GPTConfig,
    batch_size: int,
    batches: list[int],
    prompt_len: int,
    new_tokens: int,
    repeats: int,
    log,
    sections: tuple[str, ...] = ("training", "decode"),
) -> dict:
    """`ours` is our tinygrad Model at the same configuration; `sections` chooses what to compare."""
    root = Path(root).resolve()
    if str(root) not in sys.path:
        sys.path.append(str(root))  # after site-packages: their `extra/` package, never their `tinygrad/`
    os.environ["MAX_CONTEXT"] = str(config.block_size)  # gpt2.py reads it when imported
    llmc = _load(root / "examples" / "llm.c" / "train_gpt2.py", "tinygrad_example_train_gpt2")
    gpt2 = _load(root / "examples" / "gpt2.py", "tinygrad_example_gpt2")
    gpt2.VOCAB_SIZE = config.vocab_size  # the bound of its token Variable
    out = {"checkout": str(root)}

    if "training" in sections:
        out.update(_training(llmc, ours, config, batch_size, repeats, log))
    if "decode" in sections:
        out.update(_decode(gpt2, ours, config, batches, prompt_len, new_tokens, repeats, log))
    return out


def _training(llmc, ours, config: GPTConfig, batch_size: int, repeats: int, log) -> dict:
    """Training steps as the __main__ of examples/llm.c/train_gpt2.py, taking turns with ours."""
    from tinygrad import Context, Device, Tensor, TinyJit, nn

    V, T, L, H, C = config.vocab_size, config.block_size, config.n_layer, config.n_head, config.n_embd
    device, out = Device.DEFAULT, {}
    model = llmc.GPT(llmc.GPTConfig(block_size=T, vocab_size=V, padded_vocab_size=V, n_layer=L, n_head=H, n_embd=C))
    optimizer = nn.optim.AdamW(nn.state.get_parameters(model), lr=1e-4, weight_decay=0)

    @TinyJit
    @Context(TRAINING=1)
    def step(x: Tensor, y: Tensor) -> Tensor:
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        return loss.realize(*optimizer.schedule_step())

    batch = np.random.default_rng(0).integers(0, V, (batch_size, T + 1)).astype(np.int32)
    x, y = Tensor(batch[:, :-1]).realize(), Tensor(batch[:, 1:]).realize()

    def train_step() -> None:
        step(x.contiguous(), y.contiguous()).item()
        Device[device].synchronize()

    log("tinygrad examples/llm.c/train_gpt2.py: training, in turn with ours")
    timings = interleave(
        {"example": train_step, "ours": lambda: ours.train_step(batch[:, :-1], batch[:, 1:], 1e-4)},
        repeats,
        warmup=3,
        log=log,
    )
    out["train_tokens_per_s"] = round(batch_size * T / timings["example"].median_s, 1)
    out["train_first_step_s"] = round(timings["example"].warmup_s[0], 1)
    out["ours_train_tokens_per_s"] = round(batch_size * T / timings["ours"].median_s, 1)
    return out


def _decode(gpt2, ours, config: GPTConfig, batches, prompt_len: int, new_tokens: int, repeats: int, log) -> dict:
    """Greedy generation as GPT2.generate of examples/gpt2.py, taking turns with ours."""
    from tinygrad import Tensor, Variable

    V, T, L, H, C = config.vocab_size, config.block_size, config.n_layer, config.n_head, config.n_embd
    out = {}
    prompt_len, new_tokens = lengths(config, prompt_len, new_tokens)  # as benchmarks/decode.py
    for b in batches:
        net = gpt2.Transformer(
            dim=C, n_heads=H, n_layers=L, norm_eps=config.layer_norm_eps, vocab_size=V, max_seq_len=T
        )
        prompts = np.random.default_rng(b).integers(0, V, (b, prompt_len)).tolist()

        def generate(net=net, prompts=prompts, b=b) -> None:
            toks, start_pos = [row[:] for row in prompts], 0
            for _ in range(new_tokens):
                if b == 1 and len(toks[0][start_pos:]) == 1:
                    tokens = Variable("tokens", 0, V - 1).bind(toks[0][start_pos])
                else:
                    tokens = Tensor([row[start_pos:] for row in toks])
                position = Variable("start_pos", 1 if start_pos else 0, gpt2.MAX_CONTEXT - 1).bind(start_pos)
                chosen = net(tokens, position, 0.0).tolist()
                start_pos = len(toks[0])
                for row, token in zip(toks, chosen):
                    row.append(token)

        log(f"tinygrad examples/gpt2.py: generation, batch {b}, in turn with ours")
        timings = interleave(
            {"example": generate, "ours": lambda p=prompts: our_generate(ours, p, new_tokens)},
            repeats,
            warmup=1,
            log=log,
        )
        out[f"decode_{b}_tokens_per_s"] = round(b * new_tokens / timings["example"].median_s, 1)
        out[f"decode_{b}_warmup_s"] = round(timings["example"].warmup_s[0], 1)
        out[f"ours_decode_{b}_tokens_per_s"] = round(b * new_tokens / timings["ours"].median_s, 1)
    return out
