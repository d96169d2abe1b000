"""The fill-in mode of `serve` (`--fill-mask`): a bidirectional (MLM) model fills each [MASK] of a text.

    POST /v1/fill  {"text": "for x [MASK] range(3):", "top_k": 5}     (our extension: OpenAI has none)

answers with the text cut into segments (plain text, and the place of each mask, in order) and, for
each mask, its top-k fillers with their probabilities and the entropy (nats) of the model's
distribution there. The work is `core.data.masking.predict_masked`, the function `predict-masked`
prints, so the server's fillers for a text are the command's for the same text and checkpoint.
"""

from __future__ import annotations

from core.data.masking import encode_masked_text, predict_masked
from core.data.tokenizer import MASK
from core.serve.openai_schema import RequestError, int_field

MAX_TOP_K = 20  # fillers per mask, as logprobs' alternatives per token


def parse_fill(body: dict, tokenizer, block_size: int) -> tuple[str, int, list[int]]:
    """(text, top_k, token ids) of a fill request; raises RequestError naming the bad field."""
    text = body.get("text")
    if not isinstance(text, str):
        raise RequestError(f"text must be a string with one or more {MASK}, e.g. \"for x {MASK} range(3):\"", "text")
    top_k = int_field(body, "top_k", 5, 1, MAX_TOP_K)
    try:
        ids = encode_masked_text(tokenizer, text, block_size)  # the command's own check: a mask, and a length
    except ValueError as err:
        raise RequestError(str(err), "text") from None
    return text, top_k, ids


def segments(tokenizer, ids: list[int]) -> list[dict]:
    """The masked text as the page shows it: runs of plain tokens decoded together (a run never splits a
    multi-byte character) and one {"mask": i} per [MASK], in order."""
    out: list[dict] = []
    run: list[int] = []
    for token in ids:
        if token != tokenizer.mask_id:
            run.append(token)
            continue
        if run:
            out.append({"text": tokenizer.decode(run)})
            run = []
        out.append({"mask": sum("mask" in s for s in out)})
    if run:
        out.append({"text": tokenizer.decode(run)})
    return out


def fill(model, tokenizer, text: str, top_k: int) -> list[dict]:
    """Each mask's fillers as JSON: position, the likeliest filler and its probability, entropy, candidates."""
    return [{"position": m["position"], "token": m["candidates"][0][0], "probability": m["candidates"][0][1],
             "entropy": m["entropy"], "candidates": [{"token": t, "probability": p} for t, p in m["candidates"]]}
            for m in predict_masked(model, tokenizer, text, top_k)]
