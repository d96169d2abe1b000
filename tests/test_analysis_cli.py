"""The evaluation and analysis commands end to end, on tiny checkpoints made with the command line:
backward training, every command once, the direction checks, and both backends giving the same
numbers for the same checkpoint."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import train_next_word_prediction as cli
from core.data.batches import eval_batches
from core.data.dataset import prepare_dataset
from core.data.direction import BACKWARD, FORWARD, reverse_tokens
from core.data.tokenizer import CharTokenizer, train_tokenizer
from core.evaluate.attention_maps import attention_for_prompt
from core.evaluate.bidirectional import analyze_bidirectional
from core.evaluate.lambada import score_examples
from core.evaluate.metrics import evaluate_batches
from core.generate.session import Session
from core.model.config import GPTConfig
from core.model.params import init_params
from core.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from core.train.meta import CheckpointMeta

TINY = "--data synthetic --tokenizer char --preset demo --steps 10 --eval-every 10 --batch-size 4 --no-progress"
# Text in the synthetic corpus's alphabet (the char tokenizer knows nothing else).
TEXT = "count 3 4 5 6 7 8\n2 + 5 = 7\nab ab ab ab\ncount 10 11 12 13 14 15\n"


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """A forward and a backward tiny run (torch, 10 steps each)."""
    root = tmp_path_factory.mktemp("analysis-runs")
    for name, extra in (("forward", []), ("backward", ["--reverse"])):
        assert cli.main(["--backend", "torch", *TINY.split(), *extra, "--out", str(root / name)]) == 0
    return {FORWARD: root / "forward", BACKWARD: root / "backward"}


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_reverse_trains_on_reversed_tokens(runs):
    back, fwd = load_checkpoint(runs[BACKWARD]), load_checkpoint(runs[FORWARD])
    assert back.meta.direction == BACKWARD and fwd.meta.direction == FORWARD
    # The validation loss the run recorded is that of the reversed validation stream.
    data = prepare_dataset("synthetic", "char")
    from backends import get_backend

    model = get_backend("torch").build(back.config, back.params)
    tc = back.train_config
    val = {
        name: evaluate_batches(
            model, eval_batches(tokens, back.config.block_size, tc.batch_size, tc.eval_batches, tc.seed)
        )
        for name, tokens in (("reversed", reverse_tokens(data.val)), ("forward", data.val))
    }
    assert back.meta.val_loss == pytest.approx(val["reversed"]["loss"], rel=1e-5)
    assert back.meta.val_loss != pytest.approx(val["forward"]["loss"], rel=1e-5)


def test_a_resumed_backward_run_stays_backward(runs, tmp_path, capsys):
    run_dir = tmp_path / "resumed"
    shutil.copytree(runs[BACKWARD], run_dir)
    code, _, err = run(["--backend", "torch", "--resume", str(run_dir), "--extend-steps", "2"], capsys)
    assert code == 0, err
    resumed = load_checkpoint(run_dir)
    assert resumed.step == 12 and resumed.meta.direction == BACKWARD


def test_evaluate_writes_report_and_plots(runs, tmp_path, capsys):
    data = tmp_path / "mine.txt"
    data.write_text(TEXT * 3)
    out = tmp_path / "eval"
    code, stdout, _ = run(
        [
            "evaluate",
            "--backend",
            "torch",
            "--checkpoint",
            str(runs[FORWARD]),
            "--data",
            str(data),
            "--unit",
            "line",
            "--no-progress",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0 and "bits per byte" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["sequences"] == 12 and report["summary"]["bytes"] == len(TEXT.replace("\n", "")) * 3
    assert report["unit"] == "line" and report["direction"] == FORWARD and len(report["sequences"]) == 12
    assert (out / "perplexity_histogram.png").stat().st_size > 0 and (out / "token_probabilities.png").stat().st_size
    # No --data: the validation split of the corpus the checkpoint was trained on.
    code, stdout, _ = run(
        [
            "evaluate",
            "--backend",
            "torch",
            "--checkpoint",
            str(runs[BACKWARD]),
            "--max-tokens",
            "200",
            "--no-progress",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0 and "validation split of synthetic" in stdout
    assert json.loads((out / "report.json").read_text())["summary"]["tokens"] == 200


def test_analyze_prints_views_and_writes_json(runs, tmp_path, capsys):
    out = tmp_path / "a.json"
    args = ["analyze", "--backend", "torch", "--checkpoint", str(runs[FORWARD]), "--text", TEXT, "--no-color"]
    code, stdout, _ = run([*args, "--json", str(out), "--plot", str(tmp_path / "a.png")], capsys)
    assert code == 0 and "most predictable spans" in stdout and "legend: [[token]]" in stdout
    assert "\033[" not in stdout
    result = json.loads(out.read_text())
    assert "".join(r["token"] for r in result["tokens"]) == TEXT and (tmp_path / "a.png").stat().st_size > 0
    code, stdout, _ = run([*args[:-1], "--color", "always"], capsys)  # the default, auto, colours only a terminal
    assert code == 0 and "\033[" in stdout
    code, _, err = run(["analyze", "--backend", "torch", "--checkpoint", str(runs[FORWARD]), "--text", "ü"], capsys)
    assert code == 2 and err.startswith("error: the char tokenizer has never seen") and len(err.splitlines()) == 1


def test_analyze_with_a_backward_checkpoint_reads_the_text_reversed(runs, tmp_path, capsys):
    """The same weights marked backward give, for each token, the forward model's score of the
    reversed token sequence."""
    folder = tmp_path / "as-backward"
    ck = load_checkpoint(runs[FORWARD])
    save_checkpoint(folder, Checkpoint(ck.config, ck.params, ck.meta.replace(direction=BACKWARD), ck.tokenizer_json))
    tok = CharTokenizer.__new__(CharTokenizer)
    session = Session.open(_torch(), runs[FORWARD])
    tok = session.tokenizer
    ids = tok.encode(TEXT)
    reversed_text = tok.decode(ids[::-1])
    results = {}
    for name, path, text in (("backward", folder, TEXT), ("forward", runs[FORWARD], reversed_text)):
        out = tmp_path / f"{name}.json"
        args = ["analyze", "--backend", "torch", "--checkpoint", str(path), "--text", text, "--json", str(out)]
        assert run(args, capsys)[0] == 0
        results[name] = [r["logprob"] for r in json.loads(out.read_text())["tokens"]]
    np.testing.assert_allclose(results["backward"], results["forward"][::-1], atol=1e-6)


def _torch():
    from backends import get_backend

    return get_backend("torch")


def test_lambada_forward_reverse_and_direction_checks(runs, tmp_path, capsys):
    data = tmp_path / "lambada.jsonl"
    data.write_text("".join(json.dumps({"text": line}) + "\n" for line in TEXT.splitlines()))
    for direction, extra in ((FORWARD, []), (BACKWARD, ["--reverse"])):
        out = tmp_path / f"{direction}.json"
        args = ["lambada", "--backend", "torch", "--checkpoint", str(runs[direction]), "--data", str(data), *extra]
        code, stdout, _ = run([*args, "--no-progress", "--json", str(out)], capsys)
        assert code == 0 and "target in context" in stdout and "4 passages" in stdout
        words = [r["word"] for r in json.loads(out.read_text())["passages"]]
        assert words == (["8", "7", "ab", "15"] if direction == FORWARD else ["count", "2", "ab", "count"])
    code, _, err = run(
        ["lambada", "--backend", "torch", "--checkpoint", str(runs[FORWARD]), "--data", str(data), "--reverse"], capsys
    )
    assert code == 2 and "needs a backward model" in err and "train --reverse" in err
    code, _, err = run(
        ["lambada", "--backend", "torch", "--checkpoint", str(runs[BACKWARD]), "--data", str(data)], capsys
    )
    assert code == 2 and "needs a forward model" in err
    text = tmp_path / "plain.txt"
    text.write_text(TEXT * 5)
    args = ["lambada", "--backend", "torch", "--checkpoint", str(runs[FORWARD]), "--from-text", str(text)]
    code, stdout, _ = run([*args, "--passages", "6", "--words", "8", "--no-progress"], capsys)
    assert code == 0 and "6 passages" in stdout


def test_bidirectional_plot_and_tokenizer_check(runs, tmp_path, capsys):
    plot = tmp_path / "scatter.png"
    args = ["bidirectional", "--backend", "torch", "--forward", str(runs[FORWARD]), "--backward", str(runs[BACKWARD])]
    code, stdout, _ = run([*args, "--text", TEXT, "--plot", str(plot), "--json", str(tmp_path / "b.json")], capsys)
    assert code == 0 and "most surprising words" in stdout and plot.stat().st_size > 0
    assert len(json.loads((tmp_path / "b.json").read_text())["words"]) == len(TEXT.split())
    other = tmp_path / "other"
    shutil.copytree(runs[BACKWARD], other)
    for folder in (other / "checkpoints").iterdir():
        if (folder / "tokenizer.json").exists():  # rewritten whole, so its checksums stay true
            checkpoint = load_checkpoint(folder)
            checkpoint.tokenizer_json = CharTokenizer("0123456789abcdefghijklmnopqrstuvwxyz").to_json()
            save_checkpoint(folder, checkpoint)
    code, _, err = run([*args[:-1], str(other), "--text", TEXT], capsys)
    assert code == 2 and "different tokenizers" in err
    code, _, err = run(
        [*args[:3], "--forward", str(runs[BACKWARD]), "--backward", str(runs[BACKWARD]), "--text", "ab"], capsys
    )
    assert code == 2 and "--forward needs a forward model" in err


def test_attention_grid(runs, tmp_path, capsys):
    png = tmp_path / "att.png"
    code, stdout, _ = run(
        [
            "attention",
            "--backend",
            "torch",
            "--checkpoint",
            str(runs[FORWARD]),
            "--prompt",
            "count 1 2 3",
            "--plot",
            str(png),
        ],
        capsys,
    )
    assert code == 0 and png.stat().st_size > 0 and "prev tok" in stdout


def test_generate_and_chat_with_a_backward_model(runs, capsys):
    args = ["generate", "--backend", "torch", "--checkpoint", str(runs[BACKWARD]), "--prompt", "= 7"]
    code, stdout, _ = run([*args, "--max-new-tokens", "12", "--temperature", "0"], capsys)
    lines = stdout.splitlines()
    assert code == 0 and lines[-1].endswith("= 7") and len(lines[-1]) > 3
    code, _, err = run(["chat", "--backend", "torch", "--checkpoint", str(runs[BACKWARD])], capsys)
    assert code == 2 and "backward model" in err


def test_codecheck_on_a_bpe_checkpoint(tmp_path, capsys):
    sources = tmp_path / "src"
    sources.mkdir()
    for i in range(12):  # enough files that the hash split puts some in validation
        (sources / f"m{i}.py").write_text(f'def f{i}(x, y=1):\n    """Add."""\n    if x:\n        return x + y\n')
    tok = train_tokenizer("bpe", [p.read_text() for p in sources.iterdir()], vocab_size=300)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    save_checkpoint(tmp_path / "ck", Checkpoint(config, init_params(config), CheckpointMeta(), tok.to_json()))
    out = tmp_path / "code.json"
    code, stdout, _ = run(
        [
            "codecheck",
            "--backend",
            "torch",
            "--checkpoint",
            str(tmp_path / "ck"),
            "--data",
            str(sources),
            "--samples",
            "3",
            "--max-new-tokens",
            "6",
            "--json",
            str(out),
        ],
        capsys,
    )
    assert code == 0 and "parses (ast)" in stdout and "note: the checkpoint was trained on the built-in" in stdout
    report = json.loads(out.read_text())
    assert report["summary"]["original"]["parses"] == 1.0 and report["summary"]["original"]["docstring"] == 1.0
    assert report["summary"]["original"]["keyword_recall"] == 1.0 and len(report["trained"]) >= 1


def test_both_backends_give_the_same_analysis(runs, backends):
    """One checkpoint, torch and tinygrad: token scores, LAMBADA records, bidirectional numbers and
    attention maps agree to float32 round-off."""
    results = {}
    for name, backend in backends.items():
        fwd, bwd = Session.open(backend, runs[FORWARD]), Session.open(backend, runs[BACKWARD])
        tok = fwd.tokenizer
        passages = [line * 2 for line in TEXT.splitlines()]  # long enough that every window is a full block
        results[name] = {
            "lambada": score_examples(fwd.model, tok, passages, FORWARD, batch_size=16),
            "bidirectional": analyze_bidirectional(fwd.model, bwd.model, tok, TEXT),
            "attention": attention_for_prompt(fwd.model, tok, "count 1 2 3").maps,
        }
    a, b = results["torch"], results["tinygrad"]
    for ra, rb in zip(a["lambada"], b["lambada"]):
        assert ra["predicted"] == rb["predicted"] and ra["logprob"] == pytest.approx(rb["logprob"], abs=1e-4)
    for ra, rb in zip(a["bidirectional"]["words"], b["bidirectional"]["words"]):
        for key in ("forward_logprob", "backward_logprob", "forward_neighbour_logprob", "backward_neighbour_logprob"):
            assert ra[key] == pytest.approx(rb[key], abs=1e-4), key
    for ma, mb in zip(a["attention"], b["attention"]):
        np.testing.assert_allclose(ma, mb, atol=1e-5)
