"""A trained model ready to talk to: a checkpoint loaded on a backend, its tokenizer, and the
sampling settings. The `generate` and `chat` commands are thin layers over this.

Text streams out token by token: the ids generated so far are decoded as a whole and only the new
characters are printed, so a character that spans several byte-level tokens appears once complete.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TextIO

from core.data.tokenizer import Tokenizer, tokenizer_from_json
from core.generate.generation import TokenCallback, generate
from core.generate.sampling import SamplingConfig
from core.model.config import TrainConfig
from core.model.context import crop_context
from core.model.interface import Backend, Model
from core.train.checkpoint import Checkpoint, list_checkpoints, load_best_or_last


@dataclass
class Settings:
    """What `set name=value` changes in chat; the same fields are flags of `generate`."""

    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int | None = 40
    top_p: float | None = None
    seed: int | None = 1337
    stats: bool = False  # show each token's probability, rank and entropy

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)


@dataclass
class Session:
    backend: Backend
    path: Path
    checkpoint: Checkpoint
    model: Model
    tokenizer: Tokenizer
    settings: Settings = field(default_factory=Settings)

    @classmethod
    def open(cls, backend: Backend, path: str | Path, which: str | int = "best", dtype: str = "float32") -> Session:
        """Load a checkpoint (float32 or int8) on `backend`; `dtype` is the compute precision (TrainConfig.dtype)."""
        checkpoint = load_best_or_last(path, which)
        if checkpoint.tokenizer_json is None:
            raise ValueError(f"checkpoint {checkpoint.path} has no tokenizer.json, so text cannot be encoded")
        model = backend.build(checkpoint.config, checkpoint.params, TrainConfig(dtype=dtype))
        return cls(backend, Path(path), checkpoint, model, tokenizer_from_json(checkpoint.tokenizer_json))

    def load(self, which: str | int) -> str:
        self.checkpoint = load_best_or_last(self.path, which)
        self.model.load_params(self.checkpoint.params)
        return f"loaded {self.checkpoint.path.name} (step {self.checkpoint.step})"

    def encode_prompt(self, prompt: str) -> tuple[list[int], str | None]:
        """Token ids for `prompt` and a note when it had to change: empty -> end-of-text, too long -> tail."""
        ids = self.tokenizer.encode(prompt) if prompt else [self.tokenizer.eot_id]
        block = self.checkpoint.config.block_size
        kept, dropped = crop_context(ids, block - 1)  # leave room for at least one new token in the window
        if dropped:
            return kept, f"note: the prompt has {len(ids)} tokens; keeping its last {len(kept)} (block_size {block})"
        return ids, None

    def generate(self, prompt: str, write: Callable[[str], None] | None = None) -> tuple[str, list[dict]]:
        """Continue `prompt`; `write` receives new text as it is produced. Returns the text and token stats."""
        ids, note = self.encode_prompt(prompt)
        if note and write:
            write(note + "\n")
        new_ids: list[int] = []
        shown = ""

        def on_token(row: int, token: int) -> None:
            nonlocal shown
            if token == self.tokenizer.eot_id:
                return
            new_ids.append(token)
            text = self.tokenizer.decode(new_ids)
            if write and not text.endswith("\ufffd"):  # wait until a split multi-byte character is whole
                write(text[len(shown) :])
                shown = text

        new, stats = self.generate_ids(ids, on_token)
        text = self.tokenizer.decode([t for t in new if t != self.tokenizer.eot_id])
        if write and len(text) > len(shown):
            write(text[len(shown) :])
        return text, [{**st, "token": self.tokenizer.decode([t])} for t, st in zip(new, stats)]

    def generate_ids(self, ids: list[int], on_token: TokenCallback | None = None) -> tuple[list[int], list[dict]]:
        """New token ids after `ids` (in the order the model reads) with the session's sampling settings,
        up to end-of-text, and their per-token stats."""
        s = self.settings
        outputs, stats = generate(
            self.model,
            [ids],
            s.max_new_tokens,
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            seed=s.seed,
            stop_token=self.tokenizer.eot_id,
            return_stats=True,
            on_token=on_token,
        )
        return outputs[0], stats[0]


def format_stats(stats: list[dict]) -> str:
    """One line per generated token: the token, its probability, rank and the entropy it was drawn from."""
    lines = [f"{'token':>16} {'prob':>8} {'rank':>5} {'entropy':>8}"]
    for st in stats:
        lines.append(f"{st['token']!r:>16} {st['prob']:8.4f} {st['rank']:5d} {st['entropy']:8.3f}")
    return "\n".join(lines)


HELP = """\
commands:
  quit | exit                 leave
  checkpoints                 list this run's checkpoints with step and validation loss
  load <step|best|last>       switch to another checkpoint
  params                      show the generation settings
  set name=value ...          change settings, e.g. set temperature=0.7 top_k=20 max_new_tokens=80
  help                        this text
anything else is a prompt to continue"""


def parse_setting(settings: Settings, assignment: str) -> Settings:
    """`name=value` -> a new Settings; 'none' clears top_k/top_p/seed. Bad names or values raise ValueError."""
    name, sep, value = assignment.partition("=")
    known = {f.name: f for f in fields(Settings)}
    if not sep or name not in known:
        raise ValueError(f"cannot set {assignment!r}: use name=value with name one of {', '.join(known)}")
    kind = str(known[name].type)
    if value.lower() == "none" and "None" in kind:
        parsed: object = None
    elif name == "stats":
        parsed = value.lower() in ("1", "true", "yes", "on")
    else:
        try:
            parsed = (int if "int" in kind else float)(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a number") from None
    new = replace(settings, **{name: parsed})
    new.sampling()  # validates temperature, top_k and top_p
    return new


def chat(session: Session, lines: Iterable[str] = sys.stdin, out: TextIO = sys.stdout) -> None:
    """The interactive loop: read a line, run a command or continue it as a prompt."""
    write = lambda text: (out.write(text), out.flush())  # noqa: E731
    write(f"chat with {session.checkpoint.path} (step {session.checkpoint.step}); type 'help' for commands\n> ")
    for line in lines:
        line = line.rstrip("\n")
        command, _, rest = line.strip().partition(" ")
        try:
            if command in ("quit", "exit"):
                break
            elif command == "help":
                write(HELP + "\n")
            elif command == "checkpoints":
                for c in list_checkpoints(session.path):
                    loss = f"{c['val_loss']:.4f}" if c["val_loss"] is not None else "-"
                    write(f"  {c['name']:<14} step {c['step']:>7}  val loss {loss}\n")
            elif command == "load":
                write(session.load(rest.strip() or "last") + "\n")
            elif command == "params":
                write("  ".join(f"{k}={v}" for k, v in vars(session.settings).items()) + "\n")
            elif command == "set":
                for assignment in shlex.split(rest):
                    session.settings = parse_setting(session.settings, assignment)
                write("  ".join(f"{k}={v}" for k, v in vars(session.settings).items()) + "\n")
            else:
                write(line)
                _, stats = session.generate(line, write)
                write("\n")
                if session.settings.stats:
                    write(format_stats(stats) + "\n")
        except (ValueError, FileNotFoundError) as err:
            write(f"error: {err}\n")
        write("> ")
    write("\n")
