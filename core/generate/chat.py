"""The interactive chat loop over a `Session`: commands (`load`, `set`, `checkpoints`, ...) and
prompts, with `set name=value` parsed into new sampling settings, and per-token stats formatted."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable
from dataclasses import fields, replace
from typing import TextIO

from core.generate.session import Session, Settings
from core.train.checkpoint import list_checkpoints


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
