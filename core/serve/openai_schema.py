"""OpenAI's completions API as data: a request checked field by field, error and response bodies.

Requests are checked here by hand rather than by a pydantic model, so that every bad field gets
OpenAI's own error shape (`{"error": {"message", "type", "param", "code"}}`) with a message saying
what to send instead, and the status OpenAI uses: 400 for a bad value, 404 for an unknown model.

Extensions beyond OpenAI: `top_k` in the request; in `logprobs`, `token_ids`, `ranks` and
`entropies` (nats) beside OpenAI's `tokens`, `token_logprobs`, `top_logprobs` and `text_offset`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from numbers import Real

from core.generate.sampling import SamplingConfig

MAX_LOGPROBS = 20  # alternatives per token (OpenAI allows 5)
MAX_STOPS = 4  # stop strings per request, as OpenAI
MAX_N = 16  # choices per prompt


class RequestError(ValueError):
    """A request the server refuses; `status` is the HTTP status of the answer."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code

    def body(self) -> dict:
        kind = "not_found_error" if self.status == 404 else "invalid_request_error"
        return error_body(str(self), kind, self.param, self.code)


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(frozen=True)
class CompletionRequest:
    prompts: list[str | list[int]]  # texts, or token id lists
    max_tokens: int
    sampling: SamplingConfig
    stop: list[str]
    seed: int | None
    n: int
    logprobs: int | None  # alternatives per token, None: no logprobs
    echo: bool
    stream: bool
    include_usage: bool  # stream_options.include_usage


def parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(f"the request body is not valid JSON ({err}): send a JSON object") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object such as {\"prompt\": \"def \"}")
    return body


def int_field(body: dict, name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name}={value!r} is invalid: use an integer", name)
    if value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise RequestError(f"{name}={value} is out of range: use an integer {span}", name)
    return value


def _number(body: dict, name: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, Real):
        raise RequestError(f"{name}={value!r} is invalid: use a number", name)
    if not (low < value if low_open else low <= value) or not value <= high:
        raise RequestError(f"{name}={value} is out of range: use a number in {'(' if low_open else '['}{low}, {high}]",
                           name)
    return float(value)


def _prompts(value: object, vocab_size: int) -> list[str | list[int]]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        value = [value]  # one prompt as token ids
    if isinstance(value, list) and value and all(isinstance(v, str | list) for v in value):
        for p in value:
            if isinstance(p, list) and not (p and all(isinstance(t, int) and 0 <= t < vocab_size for t in p)):
                raise RequestError(f"a token-id prompt must be a non-empty list of ids in 0..{vocab_size - 1}",
                                   "prompt")
        return value
    raise RequestError("prompt must be a string, a list of strings, or a list of token ids", "prompt")


def parse_completion(body: dict, model_name: str, vocab_size: int, max_tokens_limit: int) -> CompletionRequest:
    """Check a completions request; raises RequestError naming the bad field."""
    model = body.get("model", model_name)
    if model != model_name:
        raise RequestError(f"model {model!r} does not exist: this server serves {model_name!r} (see GET /v1/models)",
                           "model", status=404, code="model_not_found")
    prompts = _prompts(body.get("prompt", ""), vocab_size)
    max_tokens = int_field(body, "max_tokens", 16, 1, max_tokens_limit)
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0, low_open=True)
    top_k = body.get("top_k")
    top_k = None if top_k in (None, -1, 0) else int_field(body, "top_k", None, 1)
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > MAX_STOPS or not all(isinstance(s, str) and s for s in stop):
        raise RequestError(f"stop must be a non-empty string or a list of at most {MAX_STOPS} of them", "stop")
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):  # True/False are chat-API style: not for this
        logprobs = int_field(body, "logprobs", None, 0, MAX_LOGPROBS)
    elif logprobs is not None:
        raise RequestError(f"logprobs must be an integer from 0 to {MAX_LOGPROBS}, the alternatives per token",
                           "logprobs")
    for name in ("echo", "stream"):
        if not isinstance(body.get(name, False), bool):
            raise RequestError(f"{name} must be true or false", name)
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            raise RequestError(f"{name} is not supported by this server: leave it out or send 0", name)
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("stream_options must be an object such as {\"include_usage\": true}", "stream_options")
    sampling = SamplingConfig(temperature, top_k, None if top_p == 1.0 else top_p)
    return CompletionRequest(
        prompts=prompts, max_tokens=max_tokens, sampling=sampling, stop=stop, seed=int_field(body, "seed", None, 0),
        n=int_field(body, "n", 1, 1, MAX_N), logprobs=logprobs, echo=body.get("echo", False),
        stream=body.get("stream", False), include_usage=bool(options.get("include_usage", False)),
    )


def new_logprobs() -> dict:
    return {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": [],
            "token_ids": [], "ranks": [], "entropies": []}


def add_logprob(lp: dict, token: str, token_id: int, logprob: float | None, top: dict[str, float] | None,
                offset: int, rank: int | None, entropy: float | None) -> None:
    """Append one token to a `logprobs` object (OpenAI's parallel lists, plus our extensions)."""
    for key, value in (("tokens", token), ("token_logprobs", logprob), ("top_logprobs", top),
                       ("text_offset", offset), ("token_ids", token_id), ("ranks", rank), ("entropies", entropy)):
        lp[key].append(value)


def choice(index: int, text: str, logprobs: dict | None, finish_reason: str | None) -> dict:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def completion(cid: str, created: int, model: str, choices: list[dict], usage: dict | None) -> dict:
    body = {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return body


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
