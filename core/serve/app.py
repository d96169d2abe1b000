"""The HTTP routes (FastAPI): OpenAI's completions and models, health, model info, attention, the page.

    POST /v1/completions   OpenAI's legacy completions API (streaming as server-sent events)
    GET  /v1/models        the one model served
    GET  /health           {"status": "ok"} and the batcher's state (active slots, waiting requests)
    GET  /v1/info          config, backend, device and tokenizer facts the page shows (extension)
    POST /v1/attention     attention weights of one layer and head over some token ids (extension)
    POST /v1/fill          with --fill-mask: each [MASK] of a text filled (extension, core/serve/fill_mask.py)
    GET  /                 the web page (core/serve/page/): completions, or with --fill-mask the fill-in page

Every refusal is an OpenAI-style error body: 400 for a bad value or malformed JSON, 404 for an
unknown model, 500 (the server stays up) when the model itself fails. A bidirectional model serves
/v1/fill and no completions (400), a next-token model the reverse.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from core.serve import fill_mask
from core.serve import openai_schema as schema
from core.serve.completions import Completion, Served
from core.serve.openai_schema import RequestError

PAGE = Path(__file__).parent / "page"


def create_app(served: Served) -> FastAPI:
    app = FastAPI(title="next-word prediction server", docs_url=None, redoc_url=None)
    session = served.session
    config = session.checkpoint.config

    @app.exception_handler(RequestError)
    async def refused(_: Request, err: RequestError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(Exception)
    async def failed(_: Request, err: Exception) -> JSONResponse:
        return JSONResponse(schema.error_body(f"{type(err).__name__}: {err}", "server_error"), status_code=500)

    @app.get("/health")
    async def health() -> dict:
        b = served.batcher
        return {"status": "ok", "active": len(b.active), "waiting": b.waiting, "slots": b.slots, "steps": b.steps}

    @app.get("/v1/models")
    async def models() -> dict:
        folder = session.checkpoint.path  # when the checkpoint was written, as OpenAI's "created"
        created = int(folder.stat().st_mtime) if folder is not None else int(time.time())
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": created,
                                            "owned_by": "local"}]}

    @app.get("/v1/info")
    async def info() -> dict:
        meta = session.checkpoint.meta
        return {"model": served.name, "config": config.to_dict(), "backend": session.backend.name,
                "device": str(session.backend.device), "step": session.checkpoint.step,
                "val_loss": meta.val_loss, "slots": served.batcher.slots,
                "max_tokens_limit": served.max_tokens_limit, "eot_id": session.tokenizer.eot_id,
                "mode": "fill-mask" if served.fill_mask else "completions", "mask_id": session.tokenizer.mask_id}

    @app.post("/v1/completions")
    async def completions(request: Request):
        if served.fill_mask:
            raise RequestError(f"{served.name} is a bidirectional (masked-token) model and cannot complete text: "
                               "POST /v1/fill {\"text\": \"... [MASK] ...\"} instead", code="fill_mask_model")
        body = schema.parse_json(await request.body())
        req = schema.parse_completion(body, served.name, config.vocab_size, served.max_tokens_limit)
        completion = Completion(served, req)
        if not req.stream:
            try:
                return await completion.body()
            finally:
                completion.cancel()
        return StreamingResponse(_sse(completion), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/attention")
    async def attention(request: Request) -> dict:
        body = schema.parse_json(await request.body())
        ids = body.get("token_ids")
        if not (isinstance(ids, list) and ids and all(isinstance(t, int) and 0 <= t < config.vocab_size for t in ids)):
            raise RequestError(f"token_ids must be a non-empty list of ids in 0..{config.vocab_size - 1}", "token_ids")
        ids = ids[-config.block_size:]
        layer = schema.int_field(body, "layer", 0, 0, config.n_layer - 1)
        head = schema.int_field(body, "head", 0, 0, config.n_head - 1)
        model = session.model
        future = served.batcher.call(lambda: model.attention_maps(np.array([ids]))[layer][0, head])
        weights = await asyncio.wrap_future(future)  # (T, T): row i attends over tokens 0..i
        return {"tokens": [session.tokenizer.decode([t]) for t in ids], "token_ids": ids, "layer": layer,
                "head": head, "weights": np.round(weights, 4).tolist()}

    @app.post("/v1/fill")
    async def fill(request: Request) -> dict:
        if not served.fill_mask:
            raise RequestError(f"{served.name} predicts the next token: /v1/fill needs a bidirectional model served "
                               "with --fill-mask; use /v1/completions", code="not_a_fill_mask_model")
        tok = session.tokenizer
        text, top_k, ids = fill_mask.parse_fill(schema.parse_json(await request.body()), tok, config.block_size)
        masks = await asyncio.wrap_future(served.batcher.call(lambda: fill_mask.fill(session.model, tok, text, top_k)))
        return {"model": served.name, "text": text, "segments": fill_mask.segments(tok, ids), "masks": masks}

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(PAGE / ("fill.html" if served.fill_mask else "index.html"))

    app.mount("/page", StaticFiles(directory=PAGE), name="page")
    return app


async def _sse(completion: Completion):
    """Server-sent events: one `data:` line per chunk, then usage if asked, then `data: [DONE]`.
    A client that disconnects closes this generator; `finally` frees its slots."""
    try:
        async for chunk in completion.chunks():
            yield f"data: {json.dumps(completion.chunk_body(chunk))}\n\n"
        if completion.request.include_usage:
            body = schema.completion(completion.id, completion.created, completion.served.name, [], completion.usage())
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"
    except RuntimeError as err:  # the model failed mid-stream: say so in the stream, then end it
        yield f"data: {json.dumps(schema.error_body(str(err), 'server_error'))}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        completion.cancel()
