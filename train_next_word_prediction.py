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
import os
import sys

from core.cli.flags import (
    add_analysis_commands,
    add_backend_flags,
    add_checkpoint_flags,
    add_compare_command,
    add_convert_commands,
    add_dataclass_flags,
    add_lora_flags,
    add_merge_lora_command,
    add_serve_command,
    lora_flags,
)
from core.model.config import DTYPES, GPTConfig, TrainConfig
from core.train.commands import DEFAULT_PRESET, RUN_PRESETS


def given(args: argparse.Namespace, cls: type) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


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
    add_lora_flags(t)
    t.add_argument("--tune", type=float, default=None, metavar="SECONDS",
                   help="tinygrad: first BEAM-search this run's kernels for about SECONDS (kept in tinygrad's disk "
                   "cache: later runs of these shapes use them at no cost), then train")
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
    add_compare_command(sub)
    add_merge_lora_command(sub)
    for command in sub.choices.values():
        command.add_argument("--config", default=None, metavar="TOML",
                             help="a TOML file of settings named as the flags (e.g. configs/baby-gpt.toml, or a run's "
                             "config.toml); flags given here win")
    return parser


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

    if a.tune is not None:  # this run's shapes (as train_command sizes its model) tuned first
        from backends.tinygrad.tune import run_shapes, tune_run

        if (a.backend or os.environ.get("GPT_BACKEND", "tinygrad")) != "tinygrad":
            raise ValueError("--tune searches tinygrad's kernels: use it with --backend tinygrad")
        tune_run(*run_shapes(given(a, GPTConfig), given(a, TrainConfig), a.preset), a.tune)
    return train_command(lambda: make_backend(a), given(a, GPTConfig), given(a, TrainConfig), backend_name=a.backend,
                         preset=a.preset, data=a.data, tokenizer=a.tokenizer, max_data_mb=a.max_data_mb,
                         reverse=a.reverse, out=a.out, resume=a.resume, extend_steps=a.extend_steps,
                         init_from=a.init_from, tensorboard=bool(a.tensorboard), explain=a.explain,
                         progress=not a.no_progress, sample_tokens=a.sample_tokens, lora_flags=lora_flags(a))


# ---- the handlers: each calls core/<package>/commands.py with every flag passed by name (conversions: no backend)


def run_serve(a: argparse.Namespace) -> int:
    from core.serve.server import leave_a_core, serve

    leave_a_core()  # before the backend is imported
    return serve(make_backend(a), a.checkpoint, a.step, a.host, a.port, a.slots, a.max_tokens_limit, a.fill_mask)


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


def run_compare(a: argparse.Namespace) -> int:
    return commands("train").compare_command(make_backend(a), a.models, a.model, given(a, GPTConfig),
                                             given(a, TrainConfig), a.data, a.tokenizer, a.max_data_mb, a.out)


def run_merge_lora(a: argparse.Namespace) -> int:
    from core.train.lora_checkpoint import merge_lora

    return merge_lora(a.checkpoint, a.step, a.out)


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
    "compare": run_compare, "merge-lora": run_merge_lora,
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
