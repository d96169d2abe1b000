"""Train a small GPT to predict the next word, with tinygrad or PyTorch, and use it.

    python train_next_word_prediction.py --backend tinygrad            # train on the built-in corpus
    python train_next_word_prediction.py --backend torch --data my.txt # ... or on your own text
    python train_next_word_prediction.py generate --checkpoint runs/X --prompt "def "
    python train_next_word_prediction.py chat --checkpoint runs/X
    python train_next_word_prediction.py export-hf --checkpoint runs/X --out hf/X    # Hugging Face GPT-2 folder
    python train_next_word_prediction.py import-hf --model hf/gpt2 --out runs/gpt2   # ... and back
    python train_next_word_prediction.py quantize --checkpoint runs/X --out runs/X-int8

This is the only file that reads the command line; everything it runs lives in `core/` and
`backends/`. Every `GPTConfig` and `TrainConfig` field is a flag, with the field's comment as help.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from core.model.config import DTYPES, PRESETS, GPTConfig, TrainConfig, field_help

ANALYSIS_COMMANDS = ("evaluate", "analyze", "lambada", "bidirectional", "attention", "codecheck")
DEFAULT_PRESET = "default"  # the README's first command: a few minutes on a 2-core CPU
RUN_PRESETS = {**PRESETS, "default": dict(n_layer=2, n_head=4, n_embd=64, block_size=64)}
# Training settings of the default run; any flag overrides them.
DEFAULT_TRAIN = dict(steps=300, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=30, eval_every=100, eval_batches=8)


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per dataclass field (`n_layer` -> `--n-layer`), defaulting to None = "not given"."""
    helps = field_help(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=helps.get(f.name))
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(
                flag,
                type=kind,
                default=None,
                metavar=f.name.upper(),
                help=f"{helps.get(f.name, '')} (default: {f.default})",
            )


def given(args: argparse.Namespace, cls: type) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=["tinygrad", "torch"],
        default=None,
        help="framework to run on (default: $GPT_BACKEND, else tinygrad)",
    )
    parser.add_argument("--device", default=None, help="device to run on (default: the best one found)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model (the default command)")
    add_backend_flags(t)
    t.add_argument("--preset", default=None, help=f"model size: {', '.join(RUN_PRESETS)} (default: {DEFAULT_PRESET})")
    t.add_argument(
        "--data",
        default=None,
        help="a text file, a folder of text files, 'synthetic', or nothing: the Python standard library's source",
    )
    t.add_argument("--max-data-mb", type=float, default=None, help="use at most this many MB of the corpus")
    t.add_argument("--tokenizer", choices=["bpe", "char"], default="bpe", help="byte-level BPE or characters")
    t.add_argument(
        "--out", default=None, help="run folder for checkpoints, metrics and plots (default: runs/<backend>-<time>)"
    )
    t.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in this folder where it stopped")
    t.add_argument("--devices", default=None, metavar="DEV,DEV",
                   help="tinygrad: train data-parallel over these devices in one process, e.g. CPU:0,CPU:1 or "
                   "CUDA:0,CUDA:1 (torch: use torchrun --nproc_per_node=N)")
    t.add_argument("--explain", action="store_true", help="print what each stage does, with this run's shapes")
    t.add_argument("--reverse", action="store_true", help="train a backward model: every token stream reversed")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    t.add_argument("--sample-tokens", type=int, default=48, help="tokens in the sample shown at each evaluation")
    add_dataclass_flags(t, GPTConfig)
    add_dataclass_flags(t, TrainConfig)
    for name, help_text in (
        ("generate", "continue prompts with a trained model"),
        ("chat", "talk to a model interactively"),
    ):
        g = sub.add_parser(name, help=help_text)
        add_backend_flags(g)
        g.add_argument("--checkpoint", required=True, help="a run folder or a checkpoint folder")
        g.add_argument("--step", default="best", help="which checkpoint of the run: best, last or a step number")
        if name == "generate":
            prompts = g.add_mutually_exclusive_group()
            prompts.add_argument("--prompt", default="", help="text to continue (empty: start a new document)")
            prompts.add_argument("--prompts-file", default=None, help="a file with one prompt per line")
        g.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate per prompt")
        g.add_argument("--temperature", type=float, default=0.8, help="0 is greedy; higher is more random")
        g.add_argument("--top-k", type=int, default=40, help="sample among the k most likely tokens")
        g.add_argument("--top-p", type=float, default=None, help="sample within the smallest set of probability p")
        g.add_argument("--seed", type=int, default=1337, help="seed of the sampler: same seed, same text")
        g.add_argument("--stats", action="store_true", help="show each token's probability, rank and entropy")
        g.add_argument(
            "--dtype",
            choices=DTYPES,
            default="float32",
            help="compute precision (torch where the device supports it; tinygrad: float32 only)",
        )
    m = sub.add_parser("predict-masked", help="fill [MASK] tokens with a model trained with --objective mlm")
    add_backend_flags(m)
    m.add_argument("--checkpoint", required=True, help="a run folder or a checkpoint folder")
    m.add_argument("--step", default="best", help="which checkpoint of the run: best, last or a step number")
    m.add_argument("--text", required=True, help='text with one or more [MASK], e.g. "[MASK] f(x):"')
    m.add_argument("--top-k", type=int, default=5, help="fillers to show per mask")
    add_analysis_commands(sub)
    add_convert_commands(sub)
    add_compare_command(sub)
    for command in sub.choices.values():
        command.add_argument("--config", default=None, metavar="TOML",
                             help="a TOML file of settings named as the flags (e.g. configs/baby-gpt.toml, or a run's "
                             "config.toml); flags given here win")
    return parser


def _check_setting(action: argparse.Action, name: str, value: object, path: str) -> object:
    """A value from a config file, checked as the flag would check it from the command line."""
    where = f"{path}: {name} = {value!r}"
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):  # an on/off flag
        if not isinstance(value, bool):
            raise ValueError(f"{where} is not a boolean: write true or false")
    elif action.type in (int, float) and (isinstance(value, bool) or not isinstance(value, action.type | int)):
        raise ValueError(f"{where} is not {'an integer' if action.type is int else 'a number'}")
    elif action.type in (None, str) and not isinstance(value, str):
        raise ValueError(f"{where} is not a string: quote it")
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{where} is not one of {', '.join(map(str, action.choices))}")
    return float(value) if action.type is float else value


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse `argv` (a command first); with `--config FILE`, the file's settings become the command's
    defaults before parsing, so flags given on the command line win."""
    from core.train.run_config import read_run_config

    given_config = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    given_config += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
    if not given_config or argv[0] not in DISPATCH:
        return parser.parse_args(argv)
    path, name = given_config[-1], argv[0]
    command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    actions = {a.dest: a for a in command._actions if a.option_strings and a.dest not in ("help", "config")}
    values = read_run_config(path)
    unknown = sorted(set(values) - set(actions))
    if unknown:
        known = ", ".join(sorted(actions))
        raise ValueError(f"{path}: {name} has no setting {', '.join(unknown)}: choose from {known}")
    for setting in values:
        actions[setting].required = False  # the file gives it
    command.set_defaults(**{n: _check_setting(actions[n], n, v, path) for n, v in values.items()})
    return parser.parse_args(argv)


def add_convert_commands(sub) -> None:
    """export-hf, import-hf and quantize: each reads one model folder and writes another."""
    e = sub.add_parser("export-hf", help="write a checkpoint as a Hugging Face GPT-2 folder (from_pretrained loads it)")
    e.add_argument("--checkpoint", required=True, help="a run folder or a checkpoint folder")
    e.add_argument("--step", default="best", help="which checkpoint of the run: best, last or a step number")
    e.add_argument("--out", required=True, help="folder for config.json, model.safetensors and tokenizer files")
    i = sub.add_parser("import-hf", help="turn a Hugging Face GPT-2 folder into a checkpoint for generate and chat")
    i.add_argument("--model", required=True, help="a folder with config.json and model.safetensors (save_pretrained)")
    i.add_argument("--out", required=True, help="the checkpoint folder to write")
    q = sub.add_parser("quantize", help="write an int8 weight-only copy of a checkpoint (about a quarter the size)")
    q.add_argument("--checkpoint", required=True, help="a run folder or a checkpoint folder")
    q.add_argument("--step", default="best", help="which checkpoint of the run: best, last or a step number")
    q.add_argument("--out", required=True, help="the checkpoint folder to write")
    q.add_argument(
        "--float-embeddings", action="store_true", help="keep wte (and lm_head) float32; quantize Linear weights only"
    )


def add_compare_command(sub) -> None:
    """compare: several architectures trained on the same data, tokens and seed; one table and one plot."""
    c = sub.add_parser("compare", help="train several architectures on the same data and seed: a table and a plot")
    add_backend_flags(c)
    c.add_argument("--models", default=None, metavar="TOML", help="a TOML file with one [name] table of model "
                   "fields per model (default: GPT-2 vs RoPE+RMSNorm+SwiGLU, with and without GQA)")
    c.add_argument("--model", action="append", default=None, metavar="NAME:FIELD=VALUE,...",
                   help="a model to compare (repeatable), e.g. llama:position=rope,norm=rmsnorm,mlp=swiglu")
    c.add_argument("--data", default=None, help="as train's --data (default: the Python standard library)")
    c.add_argument("--max-data-mb", type=float, default=None, help="use at most this many MB of the corpus")
    c.add_argument("--tokenizer", choices=["bpe", "char"], default="bpe", help="byte-level BPE or characters")
    c.add_argument("--out", required=True, help="folder for compare.md, compare.json, compare.png and the runs")
    add_dataclass_flags(c, GPTConfig)  # the base every model starts from; --vocab-size sizes the tokenizer
    add_dataclass_flags(c, TrainConfig)


def add_analysis_commands(sub) -> None:
    """Parsers of the evaluation and analysis commands (`core.evaluate.commands`): `--out` is a folder,
    `--plot` and `--json` are files."""
    for name, help_text in (
        ("evaluate", "perplexity, accuracy and bits per byte on a text, with plots"),
        ("analyze", "each token's probability, rank and entropy in a text"),
        ("lambada", "LAMBADA-style last-word (or --reverse: first-word) prediction"),
        ("bidirectional", "each word given its left and its right context (forward + backward model)"),
        ("attention", "attention heatmaps per layer and head for a prompt"),
        ("codecheck", "complete held-out Python function signatures: parse, docstring, keywords"),
    ):
        p = sub.add_parser(name, help=help_text)
        add_backend_flags(p)
        if name == "bidirectional":
            p.add_argument("--forward", required=True, help="run or checkpoint folder of a forward model")
            p.add_argument("--backward", required=True, help="run or checkpoint folder of a backward model")
        else:
            p.add_argument("--checkpoint", required=True, help="a run folder or a checkpoint folder")
        p.add_argument("--step", default="best", help="which checkpoint of the run: best, last or a step number")
        if name in ("analyze", "bidirectional"):
            source = p.add_mutually_exclusive_group(required=True)
            source.add_argument("--text", help="the text to analyze")
            source.add_argument("--file", help="a file holding the text to analyze")
        if name in ("evaluate", "analyze", "bidirectional"):
            p.add_argument("--stride", type=int, default=None, help="window step for long texts (default: block/2)")
        if name in ("evaluate", "lambada", "codecheck"):
            p.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
        if name in ("analyze", "lambada", "bidirectional", "codecheck"):
            p.add_argument("--json", dest="json_path", default=None, metavar="FILE", help="also write the results here")
        if name in ("evaluate", "lambada"):
            p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # The flags of one command each: evaluate, analyze, lambada, bidirectional, attention, codecheck.
    ev, an, la, bi, at, cc = (sub.choices[n] for n in ANALYSIS_COMMANDS)
    ev.add_argument("--data", help="file, folder or 'synthetic' (default: the checkpoint's validation split)")
    ev.add_argument("--unit", choices=["document", "paragraph", "line"], default="document", help="what a sequence is")
    ev.add_argument("--max-tokens", type=int, default=None, help="evaluate at most this many tokens")
    ev.add_argument("--out", default="evaluation", help="folder for report.json and the plots (default: evaluation)")
    an.add_argument("--span", type=int, default=5, help="tokens per span in the most/least predictable spans")
    an.add_argument("--spans", type=int, default=3, help="how many spans of each kind to show")
    an.add_argument("--rows", type=int, default=40, help="table rows to print (the JSON has all)")
    an.add_argument("--plot", default=None, metavar="PNG", help="write a bar chart of the token probabilities")
    an.add_argument("--no-color", action="store_true", help="mark improbable tokens with [ ] instead of colours")
    la.add_argument("--data", help="a JSONL file with a 'text' field per line")
    la.add_argument("--from-text", default=None, metavar="FILE", help="cut passages from a plain text file instead")
    la.add_argument("--passages", type=int, default=200, help="passages to cut with --from-text")
    la.add_argument("--words", type=int, default=40, help="words per passage with --from-text")
    la.add_argument("--reverse", action="store_true", help="predict the first word from the rest (backward model)")
    la.add_argument("--examples", type=int, default=5, help="passages to show")
    bi.add_argument("--top", type=int, default=10, help="surprising words to list")
    bi.add_argument("--plot", default="bidirectional.png", metavar="PNG", help="scatter plot file")
    at.add_argument("--prompt", required=True, help="the text whose attention to draw")
    at.add_argument("--plot", default="attention.png", metavar="PNG", help="grid image file")
    cc.add_argument("--samples", type=int, default=50, help="function signatures to complete")
    cc.add_argument("--max-new-tokens", type=int, default=64, help="tokens per completion")
    cc.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    cc.add_argument("--seed", type=int, default=0, help="seeds the choice of signatures, the sampler and the baseline")
    cc.add_argument("--data", default=None, help="Python source folder (default: the built-in corpus)")
    cc.add_argument("--show", type=int, default=2, help="completions to print")


def _processes(backend) -> str:
    return f" ({backend.world_size} data-parallel processes)" if backend.world_size > 1 else ""


def make_backend(args: argparse.Namespace):
    from backends import get_backend, resolve_name

    name, device = resolve_name(args.backend), args.device
    if getattr(args, "devices", None):
        if name != "tinygrad":
            raise ValueError("--devices is tinygrad's data parallelism; with torch run torchrun --nproc_per_node=N")
        device = args.devices
    backend = get_backend(name, device)
    if backend.rank == 0:
        print(f"using {backend.name} on {backend.device}" + _processes(backend), flush=True)
    return backend


def run_train(args: argparse.Namespace) -> int:
    from core.data.dataset import DataSettings
    from core.train.resume import load_resume, resume_settings
    from core.train.run import check_writable, run_training

    resume = load_resume(args.resume) if args.resume else None
    if resume is not None:  # the run's own settings, with only --steps and friends overridable
        settings, train_config = resume_settings(resume, given(args, GPTConfig), given(args, TrainConfig))
        model_fields, run_dir = None, Path(args.resume)
    else:
        preset = args.preset or DEFAULT_PRESET
        if preset not in RUN_PRESETS:
            raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(RUN_PRESETS)}")
        train_defaults = DEFAULT_TRAIN if preset == DEFAULT_PRESET else {}
        train_config = TrainConfig(**{**train_defaults, **given(args, TrainConfig)})
        settings = DataSettings(args.data, args.tokenizer, args.vocab_size or 8192, args.max_data_mb, args.reverse)
        model_fields = {**RUN_PRESETS[preset], **given(args, GPTConfig)}
        model_fields.pop("vocab_size", None)  # the tokenizer decides it (--vocab-size sizes the tokenizer)
        backend_name = args.backend or os.environ.get("GPT_BACKEND", "tinygrad")
        run_dir = Path(args.out or f"runs/{backend_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    check_writable(run_dir)
    backend = make_backend(args)
    return run_training(backend, model_fields, train_config, settings, run_dir, resume, args.explain,
                        not args.no_progress, args.sample_tokens)


def run_generate(args: argparse.Namespace) -> int:
    """generate and chat: a checkpoint, the sampling settings, and prompts (or the chat loop)."""
    from core.generate.chat import chat, format_stats
    from core.generate.session import Session, Settings
    from core.model.params import check_causal

    backend = make_backend(args)
    session = Session.open(backend, args.checkpoint, args.step, args.dtype)
    check_causal(session.checkpoint.config)  # before any output: a bidirectional model cannot generate
    session.settings = Settings(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed, args.stats)
    session.settings.sampling()  # check the sampling flags before any work
    backward = session.checkpoint.meta.direction == "backward"
    if args.command == "chat":
        if backward:
            raise ValueError(
                f"{args.checkpoint} is a backward model (trained with --reverse): chat continues text forwards; "
                "use `generate`, which writes the text that comes before the prompt"
            )
        chat(session)
        return 0
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise FileNotFoundError(f"prompts file {path} does not exist: pass a text file with one prompt per line")
        prompts = path.read_text().splitlines()
    else:
        prompts = [args.prompt]
    write = lambda text: (sys.stdout.write(text), sys.stdout.flush())  # noqa: E731
    for prompt in prompts:
        if backward:  # the model writes what comes before the prompt
            from core.evaluate.commands import generate_backward

            before, stats = generate_backward(session, prompt)
            write(before + prompt + "\n")
        else:
            write(prompt)
            _, stats = session.generate(prompt, write)
            write("\n")
        if args.stats:
            print(format_stats(stats))
    return 0


def run_predict_masked(args: argparse.Namespace) -> int:
    from core.data.masking import predict_masked
    from core.generate.session import Session

    session = Session.open(make_backend(args), args.checkpoint, args.step)
    for i, mask in enumerate(predict_masked(session.model, session.tokenizer, args.text, args.top_k), 1):
        fillers = "  ".join(f"{token!r} {p:.3f}" for token, p in mask["candidates"])
        print(f"[MASK] {i} (token {mask['position']}, entropy {mask['entropy']:.2f} nats): {fillers}")
    return 0


# ---- checkpoint conversions: numpy in, numpy out, no backend (core/convert/)


def _new_folder(out: str) -> Path:
    """--out of a conversion: a new folder, or a checkpoint folder to overwrite; never another folder's files."""
    path = Path(out)
    if path.exists() and any(path.iterdir()) and not (path / "meta.json").exists():
        raise ValueError(f"{path} exists and is not a checkpoint folder: pass --out with a new folder")
    return path


def run_export_hf(args: argparse.Namespace) -> int:
    from core.convert.huggingface import export_hf_folder
    from core.train.checkpoint import load_best_or_last

    checkpoint = load_best_or_last(args.checkpoint, args.step)
    out = export_hf_folder(checkpoint, args.out)
    print(f"exported {checkpoint.path} (step {checkpoint.step}) to {out}")
    print(f"load it with: GPT2LMHeadModel.from_pretrained({str(out)!r})")
    if checkpoint.tokenizer_json is None:
        print("note: the checkpoint has no tokenizer, so no tokenizer.json was written")
    return 0


def run_import_hf(args: argparse.Namespace) -> int:
    from core.convert.huggingface import import_hf_folder
    from core.model.params import count_params
    from core.train.checkpoint import save_checkpoint

    out = _new_folder(args.out)
    checkpoint, note = import_hf_folder(args.model)
    save_checkpoint(out, checkpoint)
    c = checkpoint.config
    print(f"imported {args.model}: {count_params(c):,} parameters ({c.n_layer} layers, {c.n_embd} dims)")
    print(note)
    print(f"generate with: python {Path(sys.argv[0]).name} generate --checkpoint {out}")
    return 0


def run_quantize(args: argparse.Namespace) -> int:
    from core.convert.quantize_checkpoint import quantize_checkpoint
    from core.train.checkpoint import MODEL_FILE, load_best_or_last, save_checkpoint

    out = _new_folder(args.out)
    checkpoint = load_best_or_last(args.checkpoint, args.step)
    if out.resolve() == checkpoint.path.resolve():
        raise ValueError(f"--out {out} is the checkpoint being quantized: pass a new folder")
    save_checkpoint(out, quantize_checkpoint(checkpoint, embeddings=not args.float_embeddings))
    before, after = (checkpoint.path / MODEL_FILE).stat().st_size, (out / MODEL_FILE).stat().st_size
    print(f"int8 checkpoint of {checkpoint.path} (step {checkpoint.step}) in {out}")
    print(f"{MODEL_FILE}: {after / 1e6:.2f} MB, {after / before:.0%} of the float32 {before / 1e6:.2f} MB")
    print(f"generate with: python {Path(sys.argv[0]).name} generate --checkpoint {out}")
    return 0


# ---- evaluation and analysis (core/evaluate/commands.py): each flag passed by name


def run_evaluate(a: argparse.Namespace) -> int:
    from core.evaluate import commands

    return commands.evaluate(make_backend(a), a.checkpoint, a.step, data=a.data, unit=a.unit, stride=a.stride,
                             batch_size=a.batch_size, max_tokens=a.max_tokens, out=a.out, no_progress=a.no_progress)


def run_analyze(a: argparse.Namespace) -> int:
    from core.evaluate import commands

    return commands.analyze(make_backend(a), a.checkpoint, a.step, text=a.text, file=a.file, span=a.span,
                            spans=a.spans, stride=a.stride, rows=a.rows, json_path=a.json_path, plot=a.plot,
                            no_color=a.no_color)


def run_lambada(a: argparse.Namespace) -> int:
    from core.evaluate import commands

    return commands.lambada(make_backend(a), a.checkpoint, a.step, data=a.data, from_text=a.from_text,
                            passages=a.passages, words=a.words, reverse=a.reverse, batch_size=a.batch_size,
                            json_path=a.json_path, examples=a.examples, no_progress=a.no_progress)


def run_bidirectional(a: argparse.Namespace) -> int:
    from core.evaluate import commands

    return commands.bidirectional(make_backend(a), a.forward, a.backward, a.step, text=a.text, file=a.file,
                                  stride=a.stride, top=a.top, json_path=a.json_path, plot=a.plot)


def run_attention(a: argparse.Namespace) -> int:
    from core.evaluate import commands

    return commands.attention(make_backend(a), a.checkpoint, a.prompt, a.step, plot=a.plot)


def run_codecheck(a: argparse.Namespace) -> int:
    from core.evaluate import commands

    return commands.codecheck(make_backend(a), a.checkpoint, a.step, samples=a.samples,
                              max_new_tokens=a.max_new_tokens, temperature=a.temperature, seed=a.seed, data=a.data,
                              batch_size=a.batch_size, json_path=a.json_path, show=a.show)


def run_compare(a: argparse.Namespace) -> int:
    from core.data.dataset import DataSettings
    from core.train import compare

    models = compare.read_models(a.models) if a.models else {}
    models.update(compare.parse_model(spec) for spec in a.model or [])
    base = {k: v for k, v in {**compare.DEFAULT_BASE, **given(a, GPTConfig)}.items() if k != "vocab_size"}
    train_config = TrainConfig(**{**DEFAULT_TRAIN, **given(a, TrainConfig)})
    settings = DataSettings(data=a.data, tokenizer=a.tokenizer, vocab_size=a.vocab_size or 8192,
                            max_data_mb=a.max_data_mb)  # fmt: skip
    out = Path(a.out)
    compare.compare(make_backend(a), models or compare.default_models(base), train_config, settings, out, base)
    print(f"wrote {out / 'compare.md'}, {out / 'compare.json'} and {out / 'compare.png'}")
    return 0


# The one dispatch table: subcommand -> what runs it. `train` is also what runs when no command is given.
DISPATCH = {
    "train": run_train,
    "generate": run_generate,
    "chat": run_generate,
    "predict-masked": run_predict_masked,
    "evaluate": run_evaluate,
    "analyze": run_analyze,
    "lambada": run_lambada,
    "bidirectional": run_bidirectional,
    "attention": run_attention,
    "codecheck": run_codecheck,
    "export-hf": run_export_hf,
    "import-hf": run_import_hf,
    "quantize": run_quantize,
    "compare": run_compare,
}


def version_text() -> str:
    """This package's version and both frameworks' (read from their installed metadata: neither is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    from core import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return f"next-word-prediction {__version__} (tinygrad {installed('tinygrad')}, torch {installed('torch')})"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "train")  # training is the default command: `--backend torch` trains
    elif not argv[0].startswith("-") and argv[0] not in DISPATCH:
        print(f"error: unknown command {argv[0]}: choose one of {', '.join(DISPATCH)}", file=sys.stderr)
        return 2
    from core.model.interface import SetupError

    try:
        args = parse_with_config(build_parser(), argv)
        return DISPATCH[args.command](args)
    except (ValueError, FileNotFoundError, NotImplementedError, SetupError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
