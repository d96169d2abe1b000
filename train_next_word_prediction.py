"""Train a small GPT to predict the next word, with tinygrad or PyTorch, and use it.

    nwp --backend tinygrad                  # train on the built-in corpus (nwp: after `source .venv/bin/activate`,
    nwp --backend torch --data my.txt       # or .venv/bin/python train_next_word_prediction.py) ... or on your text
    nwp generate --checkpoint runs/X --prompt "def "      # also chat, export-hf, import-hf, quantize, evaluate ...

This is the only file that reads the command line; everything it runs lives in `core/` and
`backends/`. Every `GPTConfig` and `TrainConfig` field is a flag, with the field's comment as help.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys

from core.model.config import DTYPES, GPTConfig, TrainConfig, field_help
from core.train.commands import DEFAULT_PRESET, RUN_PRESETS

ANALYSIS_COMMANDS = ("evaluate", "analyze", "lambada", "bidirectional", "attention", "codecheck")


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per dataclass field (`n_layer` -> `--n-layer`), defaulting to None = "not given"."""
    helps = field_help(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=helps.get(f.name))
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=kind, default=None, metavar=f.name.upper(),
                                help=f"{helps.get(f.name, '')} (default: {f.default})")


def given(args: argparse.Namespace, cls: type) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["tinygrad", "torch"], default=None,
                        help="framework to run on (default: $GPT_BACKEND, else tinygrad)")
    parser.add_argument("--device", default=None, help="device to run on (default: the best one found)")


def add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a run folder or a checkpoint folder")
    parser.add_argument("--step", default="best", help="which checkpoint of the run: best, last or a step number")


class OneLineHelp(argparse.RawDescriptionHelpFormatter):
    """Each command and its help on one line: argparse measures command names without their indent."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=24, width=110)
        self._action_max_length = 22  # "predict-masked" (14) + its indent (4) + the gap, as argparse would


def build_parser() -> argparse.ArgumentParser:
    from core.cli.invocation import command_prefix
    from core.cli.version import version_text

    nwp = command_prefix()
    examples = (f"examples:\n  {nwp} --backend torch    # train (the default command)\n"
                f"  {nwp} generate --checkpoint runs/X --prompt 'def '\n  {nwp} COMMAND --help    # its flags")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=examples,
                                     formatter_class=OneLineHelp)
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    t = sub.add_parser("train", help="train a model (the default command)")
    add_backend_flags(t)
    t.add_argument("--preset", default=None, help=f"model size: {', '.join(RUN_PRESETS)} (default: {DEFAULT_PRESET})")
    t.add_argument("--data", default=None,
                   help="a text file, a folder of text files, 'synthetic', or nothing: "
                   "the Python standard library's source")
    t.add_argument("--max-data-mb", type=float, default=None, help="use at most this many MB of the corpus")
    t.add_argument("--tokenizer", choices=["bpe", "char"], default=None, help="byte-level BPE (default) or characters")
    t.add_argument("--out", default=None,
                   help="run folder for checkpoints, metrics and plots (default: runs/<backend>-<time>)")
    t.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in this folder (or its checkpoints/last) where it stopped, same settings")
    t.add_argument("--extend-steps", type=int, default=None, metavar="N",
                   help="with --resume: train N steps more than planned (the learning rate then holds at min_lr)")
    t.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="fine-tune: start a new run from these weights and tokenizer (a run folder, a checkpoint "
                   "folder or a Hugging Face folder) with a fresh optimizer and schedule, on --data")
    t.add_argument("--tensorboard", action="store_true", default=None,
                   help="also write TensorBoard event files to RUN/tensorboard (tensorboard --logdir runs)")
    t.add_argument("--devices", default=None, metavar="DEV,DEV",
                   help="tinygrad: train data-parallel over these devices in one process, e.g. CPU:0,CPU:1 or "
                   "CUDA:0,CUDA:1 (torch: use torchrun --nproc_per_node=N)")
    t.add_argument("--explain", action="store_true", help="print what each stage does, with this run's shapes")
    t.add_argument("--reverse", action="store_true", default=None,
                   help="train a backward model: every token stream reversed")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    t.add_argument("--sample-tokens", type=int, default=48, help="tokens in the sample shown at each evaluation")
    add_dataclass_flags(t, GPTConfig)
    add_dataclass_flags(t, TrainConfig)
    for name, help_text in (("generate", "continue prompts with a trained model"),
                            ("chat", "talk to a model interactively")):
        g = sub.add_parser(name, help=help_text)
        add_backend_flags(g)
        add_checkpoint_flags(g)
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
        g.add_argument("--dtype", choices=DTYPES, default="float32",
                       help="compute precision (torch: autocast where supported; tinygrad: float16, bfloat16 where "
                       "it compiles)")
    m = sub.add_parser("predict-masked", help="fill [MASK] tokens with a model trained with --objective mlm")
    add_backend_flags(m)
    add_checkpoint_flags(m)
    m.add_argument("--text", required=True, help='text with one or more [MASK], e.g. "[MASK] f(x):"')
    m.add_argument("--top-k", type=int, default=5, help="fillers to show per mask")
    add_analysis_commands(sub)
    add_convert_commands(sub)
    add_serve_command(sub)
    for command in sub.choices.values():
        command.add_argument("--config", default=None, metavar="TOML",
                             help="a TOML file of settings named as the flags (e.g. configs/baby-gpt.toml, or a run's "
                             "config.toml); flags given here win")
    return parser


def add_serve_command(sub) -> None:
    s = sub.add_parser("serve", help="an OpenAI-compatible HTTP API and a web page for a trained model")
    add_backend_flags(s)
    add_checkpoint_flags(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on")
    s.add_argument("--slots", type=int, default=8, help="requests decoded together in one batch")
    s.add_argument("--max-tokens-limit", type=int, default=None, help="largest max_tokens (default: block_size)")


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse `argv` (a command first); with `--config FILE`, the file's settings become the command's
    defaults before parsing, so flags given on the command line win."""
    from core.cli.settings import check_setting
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
    switch = lambda a: a.nargs == 0 or isinstance(a, argparse.BooleanOptionalAction)  # noqa: E731  an on/off flag
    command.set_defaults(**{n: check_setting(n, v, path, actions[n].type, switch(actions[n]), actions[n].choices)
                            for n, v in values.items()})
    return parser.parse_args(argv)


def add_convert_commands(sub) -> None:
    """export-hf, import-hf and quantize: each reads one model folder and writes another."""
    e = sub.add_parser("export-hf", help="write a checkpoint as a Hugging Face GPT-2 folder (from_pretrained loads it)")
    add_checkpoint_flags(e)
    e.add_argument("--out", required=True, help="folder for config.json, model.safetensors and tokenizer files")
    i = sub.add_parser("import-hf", help="turn a Hugging Face GPT-2 folder into a checkpoint for generate and chat")
    i.add_argument("--model", required=True, help="a folder with config.json and model.safetensors (save_pretrained)")
    i.add_argument("--out", required=True, help="the checkpoint folder to write")
    q = sub.add_parser("quantize", help="write an int8 weight-only copy of a checkpoint (about a quarter the size)")
    add_checkpoint_flags(q)
    q.add_argument("--out", required=True, help="the checkpoint folder to write")
    q.add_argument(
        "--float-embeddings", action="store_true", help="keep wte (and lm_head) float32; quantize Linear weights only"
    )


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
            p.add_argument("--step", default="best", help="which checkpoint of each run: best, last or a step number")
        else:
            add_checkpoint_flags(p)
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
    an.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                    help="colour improbable tokens: auto = only on a terminal; never marks them with [ ]")
    an.add_argument("--no-color", dest="color", action="store_const", const="never", help="the same as --color never")
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


def make_backend(args: argparse.Namespace):
    from backends import get_backend, resolve_name

    name, device = resolve_name(args.backend), args.device
    if getattr(args, "devices", None):
        if name != "tinygrad":
            raise ValueError("--devices is tinygrad's data parallelism; with torch run torchrun --nproc_per_node=N")
        device = args.devices
    backend = get_backend(name, device)
    if backend.rank == 0:
        processes = f" ({backend.world_size} data-parallel processes)" if backend.world_size > 1 else ""
        print(f"using {backend.name} on {backend.device}{processes}", flush=True)
    return backend


def run_train(a: argparse.Namespace) -> int:
    from core.train.commands import train_command

    return train_command(lambda: make_backend(a), given(a, GPTConfig), given(a, TrainConfig), backend_name=a.backend,
                         preset=a.preset, data=a.data, tokenizer=a.tokenizer, max_data_mb=a.max_data_mb,
                         reverse=a.reverse, out=a.out, resume=a.resume, extend_steps=a.extend_steps,
                         init_from=a.init_from, tensorboard=bool(a.tensorboard), explain=a.explain,
                         progress=not a.no_progress, sample_tokens=a.sample_tokens)


# ---- the handlers: each calls core/<package>/commands.py with every flag passed by name (conversions: no backend)


def run_serve(a: argparse.Namespace) -> int:
    from core.serve.server import serve

    return serve(make_backend(a), a.checkpoint, a.step, a.host, a.port, a.slots, a.max_tokens_limit)


def commands(package: str):
    """`core.<package>.commands`, imported only when one of its commands runs (a fast --help)."""
    return importlib.import_module(f"core.{package}.commands")


def run_generate(a: argparse.Namespace) -> int:
    return commands("generate").generate(
        make_backend(a), a.checkpoint, a.step, a.dtype, max_new_tokens=a.max_new_tokens, temperature=a.temperature,
        top_k=a.top_k, top_p=a.top_p, seed=a.seed, stats=a.stats, prompt=getattr(a, "prompt", ""),
        prompts_file=getattr(a, "prompts_file", None), chat=a.command == "chat")


def run_predict_masked(a: argparse.Namespace) -> int:
    return commands("generate").predict_masked(make_backend(a), a.checkpoint, a.step, a.text, a.top_k)


def run_export_hf(a: argparse.Namespace) -> int:
    return commands("convert").export_hf(a.checkpoint, a.step, a.out)


def run_import_hf(a: argparse.Namespace) -> int:
    return commands("convert").import_hf(a.model, a.out)


def run_quantize(a: argparse.Namespace) -> int:
    return commands("convert").quantize(a.checkpoint, a.step, a.out, float_embeddings=a.float_embeddings)


def run_evaluate(a: argparse.Namespace) -> int:
    return commands("evaluate").evaluate(
        make_backend(a), a.checkpoint, a.step, data=a.data, unit=a.unit, stride=a.stride, batch_size=a.batch_size,
        max_tokens=a.max_tokens, out=a.out, no_progress=a.no_progress)


def run_analyze(a: argparse.Namespace) -> int:
    return commands("evaluate").analyze(
        make_backend(a), a.checkpoint, a.step, text=a.text, file=a.file, span=a.span, spans=a.spans, stride=a.stride,
        rows=a.rows, json_path=a.json_path, plot=a.plot, color=a.color)


def run_lambada(a: argparse.Namespace) -> int:
    return commands("evaluate").lambada(
        make_backend(a), a.checkpoint, a.step, data=a.data, from_text=a.from_text, passages=a.passages,
        words=a.words, reverse=a.reverse, batch_size=a.batch_size, json_path=a.json_path, examples=a.examples,
        no_progress=a.no_progress)


def run_bidirectional(a: argparse.Namespace) -> int:
    return commands("evaluate").bidirectional(make_backend(a), a.forward, a.backward, a.step, text=a.text,
                                              file=a.file, stride=a.stride, top=a.top, json_path=a.json_path,
                                              plot=a.plot)


def run_attention(a: argparse.Namespace) -> int:
    return commands("evaluate").attention(make_backend(a), a.checkpoint, a.prompt, a.step, plot=a.plot)


def run_codecheck(a: argparse.Namespace) -> int:
    return commands("evaluate").codecheck(
        make_backend(a), a.checkpoint, a.step, samples=a.samples, max_new_tokens=a.max_new_tokens,
        temperature=a.temperature, seed=a.seed, data=a.data, batch_size=a.batch_size, json_path=a.json_path,
        show=a.show)


# The one dispatch table: subcommand -> what runs it. `train` is also what runs when no command is given.
DISPATCH = {
    "train": run_train, "generate": run_generate, "chat": run_generate, "predict-masked": run_predict_masked,
    "evaluate": run_evaluate, "analyze": run_analyze, "lambada": run_lambada, "bidirectional": run_bidirectional,
    "attention": run_attention, "codecheck": run_codecheck,
    "export-hf": run_export_hf, "import-hf": run_import_hf, "quantize": run_quantize,
    "serve": run_serve,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "train")  # training is the default command: `--backend torch` trains
    elif not argv[0].startswith("-") and argv[0] not in DISPATCH:
        print(f"error: unknown command {argv[0]}: choose one of {', '.join(DISPATCH)}", file=sys.stderr)
        return 2
    from core.model.interface import SetupError
    from core.train.durable import SaveError

    try:
        args = parse_with_config(build_parser(), argv)
        return DISPATCH[args.command](args)
    except (ValueError, FileNotFoundError, NotImplementedError, SetupError, SaveError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
