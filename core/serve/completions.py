"""One completions request, from checked fields to OpenAI response bodies, on top of the batcher.

Each (prompt, choice) pair becomes one `Job`: choice `index = prompt * n + j` samples with
`np.random.default_rng(seed + index)`, which is how `core.generate` seeds row `index` of a batch,
so a request's text equals `generate`'s for the same prompts and seed. Every job of a request
delivers into one asyncio queue; one loop turns those events into chunks (text, logprobs, finish),
which the caller either streams as they come or joins into one body. When the caller stops
listening (a client that disconnects), `cancel` frees every slot of the request at the next step.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from core.generate.session import Session
from core.model.softmax import log_softmax
from core.serve import openai_schema as schema
from core.serve.batcher import Batcher, Finished, Job
from core.serve.openai_schema import CompletionRequest
from core.serve.text_stream import TextStream


@dataclass
class Served:
    """What the routes share: the loaded model, its batcher and the limits."""

    session: Session
    batcher: Batcher
    name: str  # the model id clients send
    max_tokens_limit: int
    fill_mask: bool = False  # a bidirectional model serving /v1/fill and the fill-in page, no completions


@dataclass
class Chunk:
    index: int
    text: str
    logprobs: dict | None  # the tokens of this chunk (OpenAI's parallel lists), or None
    finish_reason: str | None


class Completion:
    def __init__(self, served: Served, request: CompletionRequest):
        self.served, self.request = served, request
        tok = served.session.tokenizer
        keep = served.session.checkpoint.config.block_size - 1
        # The cropping rule of `generate`: at most block_size - 1 tokens, the prompt's tail.
        self.prompt_ids = [served.session.encode_prompt(p)[0] if isinstance(p, str) else p[-keep:]
                           for p in request.prompts]
        self.id, self.created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        self.jobs: list[Job] = []
        self.streams = [TextStream(tok, request.stop) for _ in range(len(request.prompts) * request.n)]
        self.completion_tokens = 0

    def usage(self) -> dict:
        return schema.usage(sum(len(ids) for ids in self.prompt_ids), self.completion_tokens)

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel()

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Chunks of every choice as the batcher produces them; ends when every choice has finished."""
        req, loop, events = self.request, asyncio.get_running_loop(), asyncio.Queue()
        tok = self.served.session.tokenizer
        for i, ids in enumerate(self.prompt_ids):
            echo = await self._echo(ids) if req.echo else None
            for j in range(req.n):
                index = i * req.n + j
                if echo is not None:
                    yield Chunk(index, *echo, None)
                rng = None
                if not req.sampling.greedy:
                    rng = np.random.default_rng(None if req.seed is None else req.seed + index)
                job = Job(ids, req.max_tokens, req.sampling, rng,
                          deliver=lambda ev, k=index: events.put_nowait((k, ev)), loop=loop,
                          top_logprobs=req.logprobs, stop_id=tok.eot_id)
                self.jobs.append(job)
                self.served.batcher.submit(job)
        offsets = [len(tok.decode(self.prompt_ids[k // req.n])) if req.echo else 0 for k in range(len(self.jobs))]
        running = len(self.jobs)
        while running:
            index, event = await events.get()
            stream = self.streams[index]
            if isinstance(event, Finished):
                running -= 1
                if event.reason == "error":
                    raise RuntimeError(f"the model failed on this request: {event.error}")
                reason = "stop" if stream.stopped else event.reason
                yield Chunk(index, stream.finish(), None, reason)
                continue
            if stream.stopped:
                continue  # tokens that were already on their way when a stop string matched
            self.completion_tokens += 1
            before = len(tok.decode(stream.ids)) if req.logprobs is not None else 0  # the token's text offset
            text = stream.push(event.id)
            lp = None
            if req.logprobs is not None:
                lp = schema.new_logprobs()
                top = {tok.decode([t]): lg for t, lg in event.top}
                schema.add_logprob(lp, tok.decode([event.id]), event.id, event.logprob, top,
                                   offsets[index] + before, event.rank, event.entropy)
            if stream.stopped:
                self.jobs[index].cancel()  # frees the slot at the next step; Finished still arrives
            yield Chunk(index, text, lp, None)

    async def _echo(self, ids: list[int]) -> tuple[str, dict | None]:
        """The prompt as text and, with logprobs, each prompt token's log-probability (the first has none)."""
        tok = self.served.session.tokenizer
        lp = None
        if self.request.logprobs is not None:
            model = self.served.session.model
            logits = await asyncio.wrap_future(self.served.batcher.call(lambda: model.logits(np.array([ids]))[0]))
            logp = log_softmax(logits)  # (T, V): row t predicts token t + 1
            lp, k = schema.new_logprobs(), self.request.logprobs
            for t, token in enumerate(ids):
                row = logp[t - 1] if t else None
                top = None if row is None else {tok.decode([int(a)]): float(row[a]) for a in np.argsort(-row)[:k]}
                schema.add_logprob(lp, tok.decode([token]), token, None if row is None else float(row[token]), top,
                                   len(tok.decode(ids[:t])), None if row is None else int((row > row[token]).sum()),
                                   None if row is None else float(-(np.exp(row) * row).sum()))
        return tok.decode(ids), lp

    async def body(self) -> dict:
        """The whole answer as one OpenAI completions body."""
        texts = [""] * (len(self.request.prompts) * self.request.n)
        logprobs = [schema.new_logprobs() if self.request.logprobs is not None else None for _ in texts]
        reasons: list[str | None] = [None] * len(texts)
        async for chunk in self.chunks():
            texts[chunk.index] += chunk.text
            if chunk.logprobs is not None:
                for key, values in chunk.logprobs.items():
                    logprobs[chunk.index][key].extend(values)
            reasons[chunk.index] = chunk.finish_reason or reasons[chunk.index]
        choices = [schema.choice(i, texts[i], logprobs[i], reasons[i]) for i in range(len(texts))]
        return schema.completion(self.id, self.created, self.served.name, choices, self.usage())

    def chunk_body(self, chunk: Chunk) -> dict:
        choice = schema.choice(chunk.index, chunk.text, chunk.logprobs, chunk.finish_reason)
        return schema.completion(self.id, self.created, self.served.name, [choice], None)
