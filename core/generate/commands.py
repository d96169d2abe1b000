"""The generation commands (generate, chat, predict-masked) as functions of plain values: a backend,
a checkpoint and the settings. The command line only parses flags and calls these."""

from __future__ import annotations

import sys
from pathlib import Path

from core.model.interface import Backend


def generate(backend: Backend, checkpoint: str, step: str = "best", dtype: str = "float32",
             max_new_tokens: int = 200, temperature: float = 0.8, top_k: int | None = 40, top_p: float | None = None,
             seed: int = 1337, stats: bool = False, prompt: str = "", prompts_file: str | None = None,
             chat: bool = False) -> int:
    """generate (each prompt, or each line of `prompts_file`, continued) and, with `chat`, the chat loop."""
    from core.generate.chat import chat as chat_loop
    from core.generate.chat import format_stats
    from core.generate.session import Session, Settings
    from core.model.params import check_causal

    session = Session.open(backend, checkpoint, step, dtype)
    check_causal(session.checkpoint.config)  # before any output: a bidirectional model cannot generate
    session.settings = Settings(max_new_tokens, temperature, top_k, top_p, seed, stats)
    session.settings.sampling()  # check the sampling flags before any work
    backward = session.checkpoint.meta.direction == "backward"
    if chat:
        if backward:
            raise ValueError(
                f"{checkpoint} is a backward model (trained with --reverse): chat continues text forwards; "
                "use `generate`, which writes the text that comes before the prompt"
            )
        chat_loop(session)
        return 0
    if prompts_file:
        path = Path(prompts_file)
        if not path.is_file():
            raise FileNotFoundError(f"prompts file {path} does not exist: pass a text file with one prompt per line")
        prompts = path.read_text().splitlines()
    else:
        prompts = [prompt]
    write = lambda text: (sys.stdout.write(text), sys.stdout.flush())  # noqa: E731
    for text in prompts:
        if backward:  # the model writes what comes before the prompt
            from core.evaluate.commands import generate_backward

            before, token_stats = generate_backward(session, text)
            write(before + text + "\n")
        else:
            write(text)
            _, token_stats = session.generate(text, write)
            write("\n")
        if stats:
            print(format_stats(token_stats))
    return 0


def predict_masked(backend: Backend, checkpoint: str, step: str, text: str, top_k: int = 5) -> int:
    """Fill each [MASK] of `text` with a bidirectional (--objective mlm) model: the top fillers per mask."""
    from core.data.masking import predict_masked as fill
    from core.generate.session import Session

    session = Session.open(backend, checkpoint, step)
    for i, mask in enumerate(fill(session.model, session.tokenizer, text, top_k), 1):
        fillers = "  ".join(f"{token!r} {p:.3f}" for token, p in mask["candidates"])
        print(f"[MASK] {i} (token {mask['position']}, entropy {mask['entropy']:.2f} nats): {fillers}")
    return 0
