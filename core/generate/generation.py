"""The generation loop: prompts in, new tokens out, the same on every backend.

The backend only computes logits (`prefill`/`decode` with its KV cache, or a full `logits` pass);
choosing tokens happens in `core.generate.sampling` with numpy, so both backends given the same weights and
seed produce the same text.

How a batch runs. Rows move in lockstep over positions: after the shortest prompt is prefilled, each
step feeds every row one token at the same position, which is the row's next prompt token while it
is still inside its prompt (teacher forcing; the logits are not used) and otherwise the token just
sampled for it. Attention never crosses rows, so each row computes exactly what its prompt computes
alone, whatever the other rows hold. A row that has finished keeps being fed a filler token (id 0)
until every row is done; its output no longer changes.

The context window. A model sees at most `block_size` tokens. Once a sequence is longer, the next
token is predicted from its last `block_size` tokens, positions renumbered from 0 (nanoGPT's
cropping). With the cache this means a fresh prefill of that window for every new token from then
on, because every token's absolute position shifts by one each step: past `block_size`, the cache
saves nothing. `use_cache=False` runs the full forward pass over the (cropped) context for every
token; it is the reference the cached path is tested against, and both take the same steps and the
same random draws.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import numpy as np

from core.generate.sampling import SamplingConfig, sample, sample_with_stats
from core.model.context import crop_context
from core.model.interface import Model

TokenCallback = Callable[[int, int], None]  # on_token(row, token_id)


def _check_prompts(prompts: Sequence[Sequence[int]] | np.ndarray, vocab_size: int) -> list[list[int]]:
    if isinstance(prompts, np.ndarray):
        if prompts.ndim != 2:
            raise ValueError(f"prompts as an array must be 2-D (batch, length), got shape {prompts.shape}")
        prompts = prompts.tolist()
    rows = [[int(t) for t in p] for p in prompts]
    if not rows:
        raise ValueError("no prompts: pass at least one list of token ids")
    for i, row in enumerate(rows):
        if not row:
            raise ValueError(f"prompt {i} is empty: start it with at least one token (e.g. the end-of-text id)")
        bad = [t for t in row if not 0 <= t < vocab_size]
        if bad:
            raise ValueError(f"prompt {i} has token ids {bad[:5]} outside the vocabulary 0..{vocab_size - 1}")
    return rows


def _row_generators(seed: int | None, batch: int) -> list[np.random.Generator]:
    if seed is None:
        return [np.random.default_rng() for _ in range(batch)]  # fresh entropy: not repeatable
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed={seed!r} is invalid: use a non-negative integer, or None for a random seed")
    return [np.random.default_rng(int(seed) + i) for i in range(batch)]


def generate(
    model: Model,
    prompts: Sequence[Sequence[int]] | np.ndarray,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_token: int | None = None,
    use_cache: bool = True,
    return_stats: bool = False,
    on_token: TokenCallback | None = None,
) -> list[list[int]] | tuple[list[list[int]], list[list[dict]]]:
    """Continue each prompt (token ids; rows may differ in length) by up to `max_new_tokens` tokens.

    Returns the new tokens of each row. With `stop_token`, a row ends when it samples that token;
    the stop token counts towards `max_new_tokens` but is left out of the output, out of the stats
    and out of `on_token`, so a row is shorter than `max_new_tokens` exactly when it stopped.
    `on_token(row, token_id)` is called for every token as soon as it is chosen.
    With `return_stats`, also returns per row one dict per new token (see `TokenStats.as_dicts`:
    `prob`, `sample_prob`, `rank`, `entropy`, `model_entropy`).

    Sampling: `temperature=0` is greedy. Otherwise row i draws from its own generator
    `np.random.default_rng(seed + i)` (one draw per new token), so a row's output depends only on its
    prompt and its seed: row i of a batch equals the prompt run alone with `seed + i`, and greedy rows
    equal their single runs outright. Equality holds up to float round-off in the logits, which a
    batch computes in other kernels than a single row. `seed=None` draws fresh entropy.

    Prompts longer than `block_size` keep their last `block_size` tokens: nothing earlier is ever
    seen (see the module docstring on cropping), so the result is the same and the run is shorter.
    """
    config = SamplingConfig(temperature, top_k, top_p)  # validates the three settings
    vocab_size, block = model.config.vocab_size, model.config.block_size
    rows = [crop_context(row, block)[0] for row in _check_prompts(prompts, vocab_size)]
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int | np.integer) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} is invalid: use a non-negative integer")
    if stop_token is not None and not 0 <= stop_token < vocab_size:
        raise ValueError(f"stop_token={stop_token} is outside the vocabulary 0..{vocab_size - 1}")
    B = len(rows)
    outputs: list[list[int]] = [[] for _ in range(B)]
    stats: list[list[dict]] = [[] for _ in range(B)]
    if max_new_tokens == 0:
        return (outputs, stats) if return_stats else outputs

    rngs = None if config.greedy else _row_generators(seed, B)
    lengths = [len(row) for row in rows]
    # Every token fed so far, (B, longest prompt + new tokens): rows are aligned at position 0.
    seq = np.zeros((B, max(lengths) + max_new_tokens), dtype=np.int64)
    for i, row in enumerate(rows):
        seq[i, : len(row)] = row
    chosen_count = [0] * B  # tokens chosen per row, the stop token included
    done = [False] * B

    def next_logits(p: int, first: bool) -> np.ndarray:
        """Logits (B, V) predicting position p, given the p tokens seq[:, :p]."""
        window = seq[:, max(0, p - block) : p]  # the last block_size tokens, positions from 0
        if not use_cache:
            return model.logits(window)[:, -1]
        if first or p > block:  # start the cache, or restart it because the window has moved
            return model.prefill(window)
        return model.decode(seq[:, p - 1])  # one new token at position p-1, the rest cached

    p = min(lengths)  # every row has p tokens in; the next token goes to position p
    logits = next_logits(p, first=True)
    while True:
        choosing = [i for i in range(B) if not done[i] and p >= lengths[i]]  # the others are in their prompt
        if choosing:
            gens = [rngs[i] for i in choosing] if rngs is not None else None
            if return_stats:
                tokens, token_stats = sample_with_stats(logits[choosing], config, gens)
                for i, st in zip(choosing, token_stats.as_dicts()):
                    stats[i].append(st)
            else:
                tokens = sample(logits[choosing], config, gens)
            for i, token in zip(choosing, tokens.tolist()):
                chosen_count[i] += 1
                seq[i, p] = token
                if token == stop_token:
                    done[i] = True
                    if return_stats:
                        stats[i].pop()  # the stop token is not part of the output
                    continue
                outputs[i].append(token)
                if on_token is not None:
                    on_token(i, token)
                done[i] = chosen_count[i] == max_new_tokens
        if all(done):
            break
        # Rows that are done are fed seq's initial 0 from here on: any id is harmless, since
        # attention never crosses rows and their outputs are final.
        p += 1
        logits = next_logits(p, first=False)
    return (outputs, stats) if return_stats else outputs


class Tokenizer(Protocol):
    eot_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class PromptTruncatedWarning(UserWarning):
    """A prompt had more tokens than the model's context window; only its tail was used."""


def generate_text(
    model: Model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_token: int | Literal["eot"] | None = "eot",
    use_cache: bool = True,
    return_stats: bool = False,
    on_token: TokenCallback | None = None,
) -> list[str] | tuple[list[str], list[list[dict]]]:
    """Continue each text prompt; returns the new text of each (plus per-token stats if asked).

    An empty prompt starts from the end-of-text token, i.e. "the beginning of a document".
    A prompt longer than `block_size` tokens keeps its last `block_size` tokens and emits one
    `PromptTruncatedWarning` per such prompt (a CLI can catch them with `warnings.catch_warnings`
    and print `str(w.message)`, one line each). `stop_token` defaults to the end-of-text id ("eot");
    None generates all `max_new_tokens`. Other arguments are those of `generate`.
    """
    block = model.config.block_size
    ids: list[list[int]] = []
    for i, text in enumerate(prompts):
        row, dropped = crop_context(tokenizer.encode(text) if text else [tokenizer.eot_id], block)
        if dropped:
            warnings.warn(
                PromptTruncatedWarning(
                    f"prompt {i} has {len(row) + dropped} tokens, more than block_size={block}: using its last {block}"
                ),
                stacklevel=2,
            )
        ids.append(row)
    stop = tokenizer.eot_id if stop_token == "eot" else stop_token
    result = generate(
        model, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
        stop_token=stop, use_cache=use_cache, return_stats=return_stats, on_token=on_token,
    )
    outputs, stats = result if return_stats else (result, None)
    texts = [tokenizer.decode(out) for out in outputs]
    return (texts, stats) if return_stats else texts
