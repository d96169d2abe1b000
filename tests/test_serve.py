"""`serve` as clients meet it: the official `openai` package against a server on a free loopback port.

A tiny character-level checkpoint is trained once for the module (characters re-tokenize exactly,
so a completion's text can be scored again by `analyze`). The reference answers are the CLI's own
`generate` output and `core.evaluate.analysis.analyze_text`, never numbers copied from an earlier run.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

openai = pytest.importorskip("openai", reason="the openai package is not installed: pip install -r requirements.txt")

import train_next_word_prediction as cli  # noqa: E402
from core.evaluate.analysis import analyze_text  # noqa: E402
from core.model.softmax import log_softmax  # noqa: E402
from core.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from tests.serve_helpers import start_server, train_tiny_run  # noqa: E402

PROMPTS = ["count 1 2", "3 4 5", "7", "count", "1 2 3 4", "9 8", "5 5", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("serve") / "run")


@pytest.fixture(scope="module")
def server(run):
    served, url, stop = start_server(run)
    yield served, url
    stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key="unused", max_retries=0)


def cli_generate(capsys, run: Path, prompt: str, *flags: str) -> str:
    """What `generate` prints after the prompt (its continuation), for the same checkpoint."""
    return cli_generate_on(capsys, run, "torch", prompt, *flags)


def cli_generate_on(capsys, run: Path, backend: str, prompt: str, *flags: str) -> str:
    capsys.readouterr()
    assert cli.main(["generate", "--backend", backend, "--checkpoint", str(run), "--prompt", prompt, *flags]) == 0
    out = capsys.readouterr().out
    line = out[out.index("\n") + 1 :]  # after "using <backend> on <device>"
    assert line.startswith(prompt) and line.endswith("\n")
    return line[len(prompt) : -1]


def test_models_and_health(server, client):
    served, url = server
    assert [m.id for m in client.models.list().data] == [served.name]
    assert json.load(urllib.request.urlopen(url + "/health"))["status"] == "ok"


def test_greedy_text_equals_generate(run, server, client, capsys):
    expected = cli_generate(capsys, run, "count 1 2", "--temperature", "0", "--max-new-tokens", "30")
    got = client.completions.create(model=server[0].name, prompt="count 1 2", max_tokens=30, temperature=0)
    assert got.choices[0].text == expected
    streamed = client.completions.create(model=server[0].name, prompt="count 1 2", max_tokens=30, temperature=0,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed) == expected
    assert got.usage.prompt_tokens == len("count 1 2") and got.usage.completion_tokens <= 30


def test_sampled_text_equals_generate_with_the_same_seed(run, server, client, capsys):
    flags = ["--temperature", "0.9", "--top-k", "5", "--seed", "11", "--max-new-tokens", "25"]
    expected = cli_generate(capsys, run, "3 4", *flags)
    got = client.completions.create(model=server[0].name, prompt="3 4", max_tokens=25, temperature=0.9, seed=11,
                                    extra_body={"top_k": 5})
    assert got.choices[0].text == expected


def test_logprobs_equal_analyze(server, client):
    served = server[0]
    got = client.completions.create(model=served.name, prompt="", max_tokens=30, temperature=0.8, seed=3, logprobs=5)
    lp = got.choices[0].logprobs
    text = got.choices[0].text
    assert "".join(lp.tokens) == text and text
    rows = analyze_text(served.session.model, served.session.tokenizer, text).rows()  # scored after end-of-text
    np.testing.assert_allclose(lp.token_logprobs, [r["logprob"] for r in rows], atol=1e-4)
    assert lp.model_extra["ranks"] == [r["rank"] for r in rows]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert len(top) == 5 and list(top.values()) == sorted(top.values(), reverse=True)
        assert token not in top or abs(top[token] - logprob) < 1e-9


def test_echo_returns_the_prompt_and_its_logprobs(server, client):
    served = server[0]
    got = client.completions.create(model=served.name, prompt="1 2 3", max_tokens=5, temperature=0, echo=True,
                                    logprobs=2)
    c = got.choices[0]
    assert c.text.startswith("1 2 3") and len(c.text) == 5 + len(c.logprobs.tokens) - 5
    assert c.logprobs.token_logprobs[0] is None and c.logprobs.tokens[:5] == list("1 2 3")
    full = served.session.model.logits(np.array([served.session.tokenizer.encode("1 2 3")]))[0]
    logp = log_softmax(full)
    ids = served.session.tokenizer.encode("1 2 3")
    np.testing.assert_allclose(c.logprobs.token_logprobs[1:5], [logp[t - 1, ids[t]] for t in range(1, 5)], atol=1e-5)


def test_stop_strings_and_n_choices(server, client):
    served = server[0]
    full = client.completions.create(model=served.name, prompt="count", max_tokens=30, temperature=0).choices[0].text
    stop = full[5:7]
    assert len(stop) == 2
    cut = client.completions.create(model=served.name, prompt="count", max_tokens=30, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[: full.index(stop)] and cut.choices[0].finish_reason == "stop"
    many = client.completions.create(model=served.name, prompt=["7", "9"], max_tokens=10, temperature=1.0, seed=5, n=2)
    assert sorted(c.index for c in many.choices) == [0, 1, 2, 3]
    alone = client.completions.create(model=served.name, prompt="9", max_tokens=10, temperature=1.0, seed=5 + 3)
    assert many.choices[3].text == alone.choices[0].text  # choice index 3 samples with seed + 3, as generate's row 3


def test_concurrent_streams_are_batched_and_each_equals_its_text_alone(server, client):
    served = server[0]

    def ask(i: int) -> str:
        stream = client.completions.create(model=served.name, prompt=PROMPTS[i], max_tokens=40, temperature=0.8,
                                           seed=100 + i, stream=True)
        return "".join(c.choices[0].text for c in stream)

    alone = [ask(i) for i in range(len(PROMPTS))]
    steps_before = served.batcher.steps
    results: dict[int, str] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, ask(i))) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [results[i] for i in range(len(PROMPTS))] == alone
    # Eight requests of up to 40 tokens took far fewer decode steps than 8 x 40: they ran together.
    assert served.batcher.steps - steps_before < 0.5 * sum(len(a) for a in alone)


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    (json.dumps({"prompt": "1", "temperature": "hot"}).encode(), 400, "temperature"),
    (json.dumps({"prompt": 5}).encode(), 400, "prompt"),
    (json.dumps({"prompt": "1", "max_tokens": 0}).encode(), 400, "max_tokens"),
    (json.dumps({"prompt": "1", "max_tokens": -3}).encode(), 400, "max_tokens"),
    (json.dumps({"prompt": "1", "max_tokens": 10_000}).encode(), 400, "max_tokens"),
    (json.dumps({"prompt": "1", "model": "gpt-4"}).encode(), 404, "model"),
    (json.dumps({"prompt": "1", "n": 0}).encode(), 400, "n"),
    (json.dumps({"prompt": "1", "logprobs": 99}).encode(), 400, "logprobs"),
    (json.dumps({"prompt": "1", "stop": ["a", "b", "c", "d", "e"]}).encode(), 400, "stop"),
    (json.dumps({"prompt": [[1, 2, 10_000]]}).encode(), 400, "prompt"),
])
def test_bad_input_gets_an_openai_error_and_the_server_stays_up(server, body, status, param):
    code, answer = _post(server[1], body)
    assert code == status and answer["error"]["param"] == param and answer["error"]["message"]
    assert json.load(urllib.request.urlopen(server[1] + "/health"))["status"] == "ok"


def test_openai_client_raises_the_matching_errors(server, client):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="1", max_tokens=3)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model=server[0].name, prompt="1", max_tokens=0)


def test_a_prompt_longer_than_the_context_keeps_its_tail(server, client):
    block = server[0].session.checkpoint.config.block_size
    got = client.completions.create(model=server[0].name, prompt="1 2 " * block, max_tokens=3, temperature=0)
    assert got.usage.prompt_tokens == block - 1 and got.usage.completion_tokens <= 3


def test_a_client_that_disconnects_frees_its_slot(server):
    served, url = server
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    body = json.dumps({"prompt": "count", "max_tokens": 40, "temperature": 1.0, "stream": True, "stop": ["\x00"]})
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.readline().startswith(b"data: ")
    conn.sock.close()  # leave mid-stream
    conn.close()
    deadline = time.time() + 10
    while served.batcher.active and time.time() < deadline:
        time.sleep(0.05)
    assert not served.batcher.active


def test_a_bidirectional_checkpoint_is_refused_at_start(run, tmp_path, capsys):
    checkpoint = load_checkpoint(run, "last")
    checkpoint.config = checkpoint.config.replace(causal=False)
    save_checkpoint(tmp_path / "mlm", checkpoint)
    capsys.readouterr()
    assert cli.main(["serve", "--backend", "torch", "--checkpoint", str(tmp_path / "mlm"), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bidirectional" in err


def test_tinygrad_server_text_equals_tinygrad_generate(run, capsys):
    """The same request on the tinygrad backend: its slot cache and jitted steps give `generate`'s text."""
    expected = cli_generate(capsys, run, "count 1 2", "--temperature", "0", "--max-new-tokens", "20")
    expected_tg = cli_generate_on(capsys, run, "tinygrad", "count 1 2", "--temperature", "0", "--max-new-tokens", "20")
    served, url, stop = start_server(run, backend="tinygrad", slots=4)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        ask = lambda stream: client.completions.create(  # noqa: E731
            model=served.name, prompt="count 1 2", max_tokens=20, temperature=0, stream=stream)
        whole, streamed = ask(False).choices[0].text, "".join(c.choices[0].text for c in ask(True))
    finally:
        stop()
    assert whole == streamed == expected_tg == expected


def test_a_llama_style_checkpoint_serves_generates_text(tmp_path, capsys):
    """RoPE, grouped-query heads, RMSNorm and SwiGLU through the slot cache: the same text as `generate`."""
    run = train_tiny_run(tmp_path / "llama", 20, "--position", "rope", "--n-kv-head", "2", "--norm", "rmsnorm",
                         "--mlp", "swiglu", "--no-bias")
    expected = cli_generate(capsys, run, "count 1 2", "--temperature", "0.8", "--seed", "4", "--max-new-tokens", "25")
    served, url, stop = start_server(run)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        got = client.completions.create(model=served.name, prompt="count 1 2", max_tokens=25, temperature=0.8, seed=4,
                                        extra_body={"top_k": 40})
    finally:
        stop()
    assert served.session.checkpoint.config.position == "rope" and got.choices[0].text == expected
