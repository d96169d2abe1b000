"""Train a small GPT to predict the next word, with tinygrad or PyTorch, and use it.

    python train_next_word_prediction.py --backend tinygrad            # train on the built-in corpus
    python train_next_word_prediction.py --backend torch --data my.txt # ... or on your own text
    python train_next_word_prediction.py generate --checkpoint runs/X --prompt "def "
    python train_next_word_prediction.py chat --checkpoint runs/X

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

from core.config import PRESETS, GPTConfig, TrainConfig, field_help

COMMANDS = ("train", "generate", "chat")
DEFAULT_PRESET = "default"  # the README's first command: a few minutes on a 2-core CPU
RUN_PRESETS = {**PRESETS, "default": dict(n_layer=2, n_head=4, n_embd=128, block_size=64)}
# Training settings of the default run; any flag overrides them.
DEFAULT_TRAIN = dict(steps=600, batch_size=16, lr=2e-3, min_lr=2e-4, warmup_steps=50, eval_every=100, eval_batches=8)


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
    sub = parser.add_subparsers(dest="command")
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
    t.add_argument("--explain", action="store_true", help="print what each stage does, with this run's shapes")
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
    return parser


def make_backend(args: argparse.Namespace):
    from backends import get_backend, resolve_name

    backend = get_backend(resolve_name(args.backend), args.device)
    print(f"using {backend.name} on {backend.device}", flush=True)
    return backend


def run_train(args: argparse.Namespace) -> int:
    from core.checkpoint import load_checkpoint
    from core.data import check_length, prepare_dataset
    from core.explain import explain
    from core.metrics import unigram_loss
    from core.plots import plot_training_curve
    from core.spec import count_params
    from core.tokenizer import tokenizer_from_json
    from core.train import train

    resume = load_checkpoint(args.resume, "last", optimizer=True) if args.resume else None
    if resume is not None:  # the run's own settings, with only --steps and friends overridable
        settings = resume.meta["run_settings"]
        for key in ("data", "tokenizer", "max_data_mb"):
            setattr(args, key, settings[key])
        model_given = given(args, GPTConfig)
        config = resume.config
        if model_given and config.replace(**model_given) != config:
            raise ValueError(
                f"--resume refuses a different model config: the checkpoint has {config}, flags ask {model_given}"
            )
        train_config = TrainConfig(**{**resume.meta["train_config"], **given(args, TrainConfig)})
        run_dir = Path(args.resume)
    else:
        preset = args.preset or DEFAULT_PRESET
        if preset not in RUN_PRESETS:
            raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(RUN_PRESETS)}")
        train_defaults = DEFAULT_TRAIN if preset == DEFAULT_PRESET else {}
        train_config = TrainConfig(**{**train_defaults, **given(args, TrainConfig)})
        config = None
        run_dir = Path(
            args.out
            or f"runs/{args.backend or os.environ.get('GPT_BACKEND', 'tinygrad')}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
    check_writable(run_dir)
    backend = make_backend(args)

    tokenizer = tokenizer_from_json(resume.tokenizer_json) if resume else None
    max_bytes = int(args.max_data_mb * 1e6) if args.max_data_mb else None
    data = prepare_dataset(
        args.data,
        tokenizer_kind=args.tokenizer,
        vocab_size=args.vocab_size or 8192,
        tokenizer=tokenizer,
        max_bytes=max_bytes,
    )
    if config is None:
        fields = {**RUN_PRESETS[args.preset or DEFAULT_PRESET], **given(args, GPTConfig)}
        fields["vocab_size"] = data.tokenizer.vocab_size  # the tokenizer decides the vocabulary
        config = GPTConfig(**fields)
    elif data.tokenizer.vocab_size != config.vocab_size:
        raise ValueError(
            f"--resume refuses a different tokenizer: vocabulary {data.tokenizer.vocab_size} vs {config.vocab_size}"
        )
    check_length(data.train, config.block_size, "training")
    check_length(data.val, config.block_size, "validation")

    baseline = unigram_loss(data.train, data.val, config.vocab_size)
    print(f"corpus: {data.description}")
    print(
        f"tokens: {len(data.train):,} train, {len(data.val):,} validation ({data.tokenizer.kind} tokenizer, "
        f"vocabulary {config.vocab_size:,})"
    )
    print(
        f"model: {count_params(config):,} parameters ({config.n_layer} layers, {config.n_head} heads, "
        f"{config.n_embd} dims, context {config.block_size})"
    )
    print(f"run folder: {run_dir}" + (f" (resuming at step {resume.step})" if resume else ""))
    if args.explain:
        print(explain(config, train_config, data.tokenizer.kind, len(data.train)))

    settings = {"data": args.data, "tokenizer": args.tokenizer, "max_data_mb": args.max_data_mb}
    resume_command = f"python {Path(sys.argv[0]).name} --backend {backend.name} --resume {run_dir}"
    meta = {"run_settings": settings, "corpus": data.description, "resume_command": resume_command}
    sample = make_sampler(data.tokenizer, args.sample_tokens, train_config.seed)
    result = train(
        backend,
        config,
        train_config,
        data,
        run_dir,
        resume=resume,
        meta=meta,
        sample=sample,
        progress=not args.no_progress,
    )

    if (run_dir / "metrics.jsonl").exists():
        plot_training_curve(run_dir / "metrics.jsonl", run_dir / "training_curve.png", baseline)
    print(f"\n{result.stopped} after {result.steps_done} steps; run folder {run_dir}")
    if result.last_val:
        print(
            f"validation loss {result.last_val['loss']:.4f} (best {result.best_val_loss:.4f}) "
            f"vs unigram baseline {baseline:.4f}; perplexity {result.last_val['perplexity']:.1f}"
        )
    if result.stopped == "interrupted":
        print(f"resume with: {resume_command}")
    print(f"files: checkpoints/, metrics.jsonl, training_curve.png in {run_dir}")
    return 0 if result.stopped != "non-finite loss" else 1


def run_generate(args: argparse.Namespace) -> int:
    from core.session import Session, Settings, chat, format_stats

    backend = make_backend(args)
    session = Session.open(backend, args.checkpoint, args.step)
    session.settings = Settings(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed, args.stats)
    session.settings.sampling()  # check the sampling flags before any work
    if args.command == "chat":
        chat(session)
        return 0
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise FileNotFoundError(f"prompts file {path} does not exist: pass a text file with one prompt per line")
        prompts = path.read_text().splitlines()
    else:
        prompts = [args.prompt]
    for prompt in prompts:
        write = lambda text: (sys.stdout.write(text), sys.stdout.flush())  # noqa: E731
        write(prompt)
        _, stats = session.generate(prompt, write)
        write("\n")
        if args.stats:
            print(format_stats(stats))
    return 0


def make_sampler(tokenizer, max_new_tokens: int, seed: int):
    """A short greedy continuation of a fixed prompt, shown at each evaluation."""
    from core.generate import generate_text

    def sample(model, step: int) -> str:
        return generate_text(model, tokenizer, [""], max_new_tokens, temperature=0.8, top_k=40, seed=seed + step)[0]

    return sample


def check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(
            f"cannot write to the run folder {run_dir} ({err.strerror}): pass --out with a writable folder"
        ) from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS + ("-h", "--help"):
        argv.insert(0, "train")  # training is the default command
    args = build_parser().parse_args(argv)
    from core.backend import SetupError

    try:
        return run_train(args) if args.command == "train" else run_generate(args)
    except (ValueError, FileNotFoundError, NotImplementedError, SetupError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
