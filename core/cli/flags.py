"""The command line's flags, defined once for `train_next_word_prediction.py` (which alone reads argv):
one flag per config field, the backend and checkpoint flags every command shares, and the parsers of
the analysis, conversion, serving and comparison commands."""

from __future__ import annotations

import argparse
import dataclasses

from core.model.config import GPTConfig, TrainConfig, field_help
from core.model.lora import VALID_TARGETS, LoraConfig

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


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["tinygrad", "torch"], default=None,
                        help="framework to run on (default: $GPT_BACKEND, else tinygrad)")
    parser.add_argument("--device", default=None, help="device to run on (default: the best one found)")


def add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a run folder or a checkpoint folder")
    parser.add_argument("--step", default="best", help="which checkpoint of the run: best, last or a step number")


def add_serve_command(sub) -> None:
    s = sub.add_parser("serve", help="an OpenAI-compatible HTTP API and a web page for a trained model")
    add_backend_flags(s)
    add_checkpoint_flags(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on")
    s.add_argument("--slots", type=int, default=8, help="requests decoded together in one batch")
    s.add_argument("--max-tokens-limit", type=int, default=None, help="largest max_tokens (default: block_size)")
    s.add_argument("--fill-mask", action="store_true",
                   help="serve a bidirectional (--objective mlm) model as a fill-in page and POST /v1/fill")


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


def add_lora_flags(parser: argparse.ArgumentParser) -> None:
    """train's --lora-* flags (core/model/lora.py): LoRA adapters on the frozen --init-from model."""
    default = LoraConfig()
    parser.add_argument("--lora-rank", type=int, default=None, metavar="R",
                        help="fine-tune --init-from with LoRA adapters of rank R, its own weights frozen")
    parser.add_argument("--lora-alpha", type=float, default=None, metavar="A",
                        help=f"adapters are scaled by A / R (default: {default.alpha:g})")
    parser.add_argument("--lora-targets", default=None, metavar="NAMES",
                        help=f"comma-separated layers to adapt, of {', '.join(VALID_TARGETS)} "
                        f"(default: {','.join(default.targets)})")
    parser.add_argument("--lora-train-biases", action="store_true", default=None, help="LoRA: also train the biases")
    parser.add_argument("--lora-train-norms", action="store_true", default=None,
                        help="LoRA: also train the LayerNorm/RMSNorm parameters")


def lora_flags(args: argparse.Namespace) -> dict:
    """The --lora-* flags given, by LoraConfig field."""
    names = ("rank", "alpha", "targets", "train_biases", "train_norms")
    return {n: getattr(args, f"lora_{n}") for n in names if getattr(args, f"lora_{n}", None) is not None}


def add_merge_lora_command(sub) -> None:
    m = sub.add_parser("merge-lora", help="fold a LoRA run's adapters into its base: a plain checkpoint")
    add_checkpoint_flags(m)
    m.add_argument("--out", default=None, help="the checkpoint folder to write (default: RUN-merged beside the run)")
