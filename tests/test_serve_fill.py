"""`serve --fill-mask`: a bidirectional (MLM) checkpoint fills [MASK]s through POST /v1/fill.

The reference answer is the `predict-masked` command's own output for the same text and checkpoint
(and `core.data.masking.predict_masked`, which it prints). A tiny character-level MLM checkpoint is
trained once for the module; the modes refuse the wrong kind of checkpoint in one line.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import train_next_word_prediction as cli
from core.data.masking import predict_masked
from tests.serve_helpers import start_server, train_tiny_run

TEXT = "count 1 [MASK] 3 4 [MASK] 6"


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("fill") / "mlm", 30, "--objective", "mlm")


@pytest.fixture(scope="module")
def server(mlm_run):
    served, url, stop = start_server(mlm_run, fill_mask=True)
    yield served, url
    stop()


def _post(url: str, path: str, body: dict | bytes) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_fill_equals_the_predict_masked_command(mlm_run, server, capsys):
    served, url = server
    code, got = _post(url, "/v1/fill", {"text": TEXT, "top_k": 5})
    assert code == 200 and len(got["masks"]) == 2
    capsys.readouterr()
    assert cli.main(["predict-masked", "--backend", "torch", "--checkpoint", str(mlm_run), "--text", TEXT]) == 0
    printed = capsys.readouterr().out.splitlines()[1:]  # after "using torch on cpu"
    # The command's lines, written from the server's answer: the same fillers, probabilities and entropies.
    from_server = [f"[MASK] {i} (token {m['position']}, entropy {m['entropy']:.2f} nats): "
                   + "  ".join(f"{c['token']!r} {c['probability']:.3f}" for c in m["candidates"])
                   for i, m in enumerate(got["masks"], 1)]
    assert from_server == printed
    direct = predict_masked(served.session.model, served.session.tokenizer, TEXT, 5)
    assert [[c["token"] for c in m["candidates"]] for m in got["masks"]] == [[t for t, _ in m["candidates"]]
                                                                             for m in direct]
    np.testing.assert_allclose([c["probability"] for m in got["masks"] for c in m["candidates"]],
                               [p for m in direct for _, p in m["candidates"]], rtol=1e-6)
    assert [m["token"] for m in got["masks"]] == [m["candidates"][0][0] for m in direct]


def test_segments_rebuild_the_text_around_the_masks(server):
    code, got = _post(server[1], "/v1/fill", {"text": TEXT, "top_k": 3})
    assert code == 200 and all(len(m["candidates"]) == 3 for m in got["masks"])
    rebuilt = "".join(s["text"] if "text" in s else "[MASK]" for s in got["segments"])
    assert rebuilt == TEXT and [s["mask"] for s in got["segments"] if "mask" in s] == [0, 1]


@pytest.mark.parametrize("body, param", [
    ({"text": "no mask here"}, "text"),
    ({"text": 5}, "text"),
    ({"text": "[MASK] " * 60}, "text"),  # longer than block_size 48
    ({"text": "1 [MASK]", "top_k": 0}, "top_k"),
    ({"text": "1 [MASK]", "top_k": "five"}, "top_k"),
    (b"{not json", None),
])
def test_bad_fill_requests_get_one_error_and_the_server_stays_up(server, body, param):
    code, answer = _post(server[1], "/v1/fill", body)
    assert code == 400 and answer["error"]["param"] == param and answer["error"]["message"]
    assert json.load(urllib.request.urlopen(server[1] + "/health"))["status"] == "ok"


def test_completions_answer_400_in_fill_mode(server):
    code, answer = _post(server[1], "/v1/completions", {"prompt": "1 2", "max_tokens": 3})
    assert code == 400 and "/v1/fill" in answer["error"]["message"]
    assert answer["error"]["type"] == "invalid_request_error"


def test_the_page_is_the_fill_in_page(server):
    html = urllib.request.urlopen(server[1] + "/").read().decode()
    assert "fill.js" in html and "app.js" not in html
    assert json.load(urllib.request.urlopen(server[1] + "/v1/info"))["mode"] == "fill-mask"


def test_an_mlm_checkpoint_without_the_flag_is_refused_naming_it(mlm_run, capsys):
    capsys.readouterr()
    assert cli.main(["serve", "--backend", "torch", "--checkpoint", str(mlm_run), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bidirectional" in err and f"serve --fill-mask --checkpoint {mlm_run}" in err


def test_the_flag_on_a_next_token_checkpoint_is_refused(tmp_path, capsys):
    run = train_tiny_run(tmp_path / "clm", 2)
    capsys.readouterr()
    assert cli.main(["serve", "--backend", "torch", "--checkpoint", str(run), "--fill-mask", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--fill-mask" in err and "without --fill-mask" in err
