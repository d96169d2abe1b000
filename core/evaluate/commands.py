"""The evaluation and analysis commands, as functions: the command line parses flags and calls one
of these with them (`evaluate`, `analyze`, `lambada`, `bidirectional`, `attention`, `codecheck`).

Each takes a backend and plain values, prints its report, writes its files and returns the exit
status. Bad input is a ValueError or FileNotFoundError with a one-line message, as everywhere.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from core.data.direction import BACKWARD, FORWARD, require_direction, to_model_order
from core.generate.session import Session
from core.model.interface import Backend


def open_model(
    backend: Backend,
    checkpoint: str,
    step: str = "best",
    causal_only: bool = True,
    needs: tuple[str, str] | None = None,
) -> tuple[Session, str]:
    """A checkpoint on `backend` (best falls back to last) and its direction, with one line said.
    Scoring tokens needs a next-token (causal) model; a masked-token one is refused unless allowed.
    `needs`: (FORWARD or BACKWARD, the task): a model of the other direction is refused, naming the task."""
    session = Session.open(backend, checkpoint, step)
    if needs is not None:
        require_direction(session.checkpoint.meta.direction, *needs, session.checkpoint.path)
    if causal_only and not getattr(session.checkpoint.config, "causal", True):
        raise ValueError(
            f"{session.checkpoint.path} is a masked-token model (causal=False): this command scores next-token "
            "predictions; use a model trained without --objective mlm"
        )
    direction = session.checkpoint.meta.direction
    print(f"checkpoint {session.checkpoint.path} (step {session.checkpoint.step}, {direction} model)")
    return session, direction


def _read_text(text: str | None, file: str | None) -> str:
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {file!r}: pass a text file to --file")
        return path.read_text(encoding="utf-8")
    if not text:
        raise ValueError('no text given: pass --text "..." or --file FILE')
    return text


def _write_json(path: str | Path, data: object) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def evaluate(
    backend: Backend,
    checkpoint: str,
    step: str = "best",
    data: str | None = None,
    unit: str = "document",
    stride: int | None = None,
    batch_size: int = 16,
    max_tokens: int | None = None,
    out: str = "evaluation",
    no_progress: bool = False,
) -> int:
    """Perplexity, accuracy and bits per byte on `data` (default: the checkpoint's validation split)."""
    from core.evaluate.perplexity import evaluate_texts, format_summary, load_sequences
    from core.plots.analysis import plot_perplexity_histogram, plot_token_probability_distribution

    session, direction = open_model(backend, checkpoint, step)
    val_of = session.checkpoint.meta.run_settings.get("data")
    seqs = load_sequences(data, unit, max_tokens, session.tokenizer, val_of=val_of)
    print(f"data: {seqs.description}")
    texts = (seqs.texts, seqs.names, direction, stride, batch_size)
    result = evaluate_texts(session.model, session.tokenizer, *texts, progress=not no_progress)
    summary = result.summary()
    block = session.checkpoint.config.block_size
    settings = {"unit": unit, "stride": stride or max(1, block // 2), "block_size": block, "direction": direction}
    print(format_summary(summary))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "checkpoint": str(session.checkpoint.path),
        "step": session.checkpoint.step,
        "backend": backend.name,
        "data": seqs.description,
        **settings,
        "summary": summary,
        "sequences": result.per_sequence(),
    }
    _write_json(out_dir / "report.json", report)
    plot_perplexity_histogram(
        result.sequence_perplexities(), summary["perplexity"], out_dir / "perplexity_histogram.png", unit
    )
    plot_token_probability_distribution(result.all_scores().prob, out_dir / "token_probabilities.png")
    print(f"files: report.json, perplexity_histogram.png, token_probabilities.png in {out_dir}")
    return 0


def use_colour(color: str, stream=None) -> bool:
    """`--color` as git reads it: always, never, or auto = only on a terminal (and not under NO_COLOR)."""
    if color not in ("auto", "always", "never"):
        raise ValueError(f"--color {color!r} is not one of auto, always, never")
    stream = sys.stdout if stream is None else stream
    auto = stream.isatty() and not os.environ.get("NO_COLOR")
    return color == "always" or (color == "auto" and auto)


def analyze(
    backend: Backend,
    checkpoint: str,
    step: str = "best",
    text: str | None = None,
    file: str | None = None,
    span: int = 5,
    spans: int = 3,
    stride: int | None = None,
    rows: int = 40,
    json_path: str | None = None,
    plot: str | None = None,
    color: str = "auto",
) -> int:
    """Each token's probability, rank and entropy; the most and least predictable spans. `color`:
    always, never, or auto (colours only when the output is a terminal and NO_COLOR is not set)."""
    from core.evaluate.analysis import analyze_text, colour_legend, colour_view, format_spans, format_table

    session, direction = open_model(backend, checkpoint, step)
    body = _read_text(text, file)
    result = analyze_text(session.model, session.tokenizer, body, direction, stride)
    given = "the text after it" if direction == BACKWARD else "the text before it"
    print(f"each token's probability given {given}\n")
    use_color = use_colour(color)
    print(colour_view(result, color=use_color))
    print("\n" + colour_legend(color=use_color) + "\n")
    print(format_table(result, rows, json_path))
    print("\n" + format_spans(result.spans(span, spans)))
    s = result.summary()
    print(
        f"\n{s['tokens']} tokens: loss {s['loss']:.4f}, perplexity {s['perplexity']:.2f}, "
        f"accuracy {s['accuracy']:.3f}, mean entropy {s['mean_entropy']:.3f} nats"
    )
    if json_path:
        print(f"wrote {_write_json(json_path, result.to_json(span, spans))}")
    if plot:
        from core.plots.analysis import plot_token_probabilities

        title = f"P(token | {'right' if direction == BACKWARD else 'left'} context), step {session.checkpoint.step}"
        print(f"wrote {plot_token_probabilities(result.tokens, result.scores.prob, plot, title=title)}")
    return 0


def lambada(
    backend: Backend,
    checkpoint: str,
    step: str = "best",
    data: str | None = None,
    from_text: str | None = None,
    passages: int = 200,
    words: int = 40,
    reverse: bool = False,
    batch_size: int = 16,
    json_path: str | None = None,
    examples: int = 5,
    no_progress: bool = False,
) -> int:
    """Last-word (or, with `reverse`, first-word) prediction accuracy and perplexity, broken down."""
    from core.evaluate.lambada import format_summary, passages_from_text, read_jsonl, score_examples, summarize

    task = "lambada --reverse (predicting the first word)" if reverse else "lambada (predicting the last word)"
    session, direction = open_model(backend, checkpoint, step, needs=(BACKWARD if reverse else FORWARD, task))
    if (data is None) == (from_text is None):
        raise ValueError("pass exactly one of --data F.jsonl (a 'text' field per line) or --from-text FILE")
    texts = read_jsonl(data) if data else passages_from_text(_read_text(None, from_text), passages, words)
    records = score_examples(session.model, session.tokenizer, texts, direction, batch_size, not no_progress)
    summary = summarize(records)
    print(f"{len(records)} passages; target: the {'first' if reverse else 'last'} word")
    print(format_summary(summary))
    for r in records[:examples]:
        mark = "yes" if r["predicted"] else "no "
        print(f"  predicted {mark}  P={math.exp(r['logprob']):.3g}  {r['word']!r} ({r['target_tokens']} tokens)")
    if json_path:
        print(f"wrote {_write_json(json_path, {'direction': direction, 'summary': summary, 'passages': records})}")
    return 0


def bidirectional(
    backend: Backend,
    forward: str,
    backward: str,
    step: str = "best",
    text: str | None = None,
    file: str | None = None,
    stride: int | None = None,
    top: int = 10,
    json_path: str | None = None,
    plot: str = "bidirectional.png",
) -> int:
    """Each word given its left context (forward model) and its right context (backward model)."""
    from core.evaluate.bidirectional import analyze_bidirectional, format_report
    from core.plots.analysis import plot_bidirectional

    fwd, _ = open_model(backend, forward, step, needs=(FORWARD, "--forward"))
    bwd, _ = open_model(backend, backward, step, needs=(BACKWARD, "--backward"))
    if fwd.checkpoint.tokenizer_json != bwd.checkpoint.tokenizer_json:
        raise ValueError(
            f"the two checkpoints use different tokenizers ({fwd.tokenizer!r} vs {bwd.tokenizer!r}): "
            "train both on the same data and tokenizer (e.g. the same --data, with and without --reverse)"
        )
    result = analyze_bidirectional(fwd.model, bwd.model, fwd.tokenizer, _read_text(text, file), stride)
    print(format_report(result, top))
    if json_path:
        print(f"wrote {_write_json(json_path, result)}")
    print(f"wrote {plot_bidirectional(result['words'], plot)}")
    return 0


def attention(backend: Backend, checkpoint: str, prompt: str, step: str = "best", plot: str = "attention.png") -> int:
    """A grid of attention heatmaps (layers x heads) for one prompt, and a summary of each head."""
    from core.evaluate.attention_maps import attention_for_prompt, format_head_summary
    from core.plots.analysis import plot_attention_grid

    session, direction = open_model(backend, checkpoint, step, causal_only=False)
    att = attention_for_prompt(session.model, session.tokenizer, prompt, direction)
    if att.cropped:
        print(f"note: the prompt is longer than block_size; showing its last {len(att.tokens)} tokens")
    order = "reversed: a backward model reads right to left" if direction == BACKWARD else "rows attend to columns"
    print(format_head_summary(att.head_summary()))
    title = f"Attention, step {session.checkpoint.step} ({len(att.tokens)} tokens; {order})"
    causal = getattr(session.checkpoint.config, "causal", True)
    print(f"wrote {plot_attention_grid(att.maps, att.tokens, plot, title, causal)}")
    return 0


def codecheck(
    backend: Backend,
    checkpoint: str,
    step: str = "best",
    samples: int = 50,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    data: str | None = None,
    batch_size: int = 16,
    json_path: str | None = None,
    show: int = 2,
) -> int:
    """Complete held-out function signatures; how many parse, have docstrings, use the right keywords."""
    from core.evaluate.codecheck import complete, format_table, held_out_signatures, reference_summary, summarize
    from core.model.params import init_params

    session, _ = open_model(backend, checkpoint, step, needs=(FORWARD, "codecheck (completing functions)"))
    trained_on = session.checkpoint.meta.run_settings.get("data")
    if trained_on != data:
        print(
            f"note: the checkpoint was trained on {trained_on or 'the built-in corpus'}, "
            f"the signatures come from {data or 'the built-in corpus'}"
        )
    signatures = held_out_signatures(samples, seed, data)
    print(
        f"{len(signatures)} held-out function signatures, completed with up to {max_new_tokens} tokens "
        f"({'greedy' if temperature == 0 else f'temperature {temperature}'})"
    )
    args = dict(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, batch_size=batch_size)
    trained = complete(session.model, session.tokenizer, signatures, **args)
    untrained_model = backend.build(session.checkpoint.config, init_params(session.checkpoint.config, seed))
    untrained = complete(untrained_model, session.tokenizer, signatures, **args)
    columns = {
        "trained": summarize(trained),
        "untrained": summarize(untrained),
        "original": reference_summary(signatures),
    }
    print(format_table(columns))
    for r in trained[:show]:
        print(f"\n--- {r['name']}: parses {r['parses']}, docstring {r['docstring']}\n{r['completion']}")
    if json_path:
        print(f"wrote {_write_json(json_path, {'summary': columns, 'trained': trained, 'untrained': untrained})}")
    return 0


def generate_backward(session: Session, prompt: str) -> tuple[str, list[dict]]:
    """For a backward model: the text that comes *before* `prompt` (the prompt ends the text; an
    empty prompt means the end of a document). Returns that text and per-token stats in text order."""
    tok = session.tokenizer
    ids = to_model_order(tok.encode(prompt), BACKWARD) if prompt else [tok.eot_id]
    out, stats = session.generate_ids(ids)
    new = out[::-1]
    return tok.decode(new), [{**st, "token": tok.decode([t])} for t, st in zip(new, stats[::-1])]
