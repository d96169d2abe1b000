"""Code-generation checks: does a model trained on Python complete a function into Python?

Prompts are held-out function signatures: every `def` (methods included) in the validation split
of the corpus (by default the built-in one, the standard library, so files the model never trained
on), cut at the colon that ends the signature, with the original indentation, without decorators.
A seeded sample of them is completed by the model (`core.generate.generation`, greedy unless a temperature is
given), and each completion is judged by these rules:

1. The function is the signature plus the generated lines up to the first non-blank line indented
   no deeper than the `def` (the model has moved on); if generation stopped at the token limit
   instead, its last line is dropped, since it may be cut mid-line. Trailing blank lines go.
2. It **parses** if `ast.parse` accepts it after `textwrap.dedent` (methods become top-level
   functions). One repair is allowed: when the last non-blank line opens a block (ends with `:`),
   a `pass` one level deeper is appended first. A function with no body line fails.
3. It **has a docstring** if it parses and `ast.get_docstring` finds one.
4. **Keywords**: of `return`, `yield`, `if`, `for`, `while`, `raise`, `try`, `with`, the expected
   ones are those the original body uses; the completion's are read with `tokenize` (strings and
   comments do not count; an unparsable completion is read up to its first error). Reported: the
   mean share of expected keywords used (recall), and how often a completion returns where the
   original does.

A model with random weights (`init_params`, same config) is run on the same prompts as a baseline.
"""

from __future__ import annotations

import ast
import io
import random
import textwrap
import tokenize
from dataclasses import dataclass

import numpy as np

from core.data.corpus import load_corpus, split_documents
from core.data.tokenizer import Tokenizer
from core.generate.generation import generate
from core.model.interface import Model

KEYWORDS = ("return", "yield", "if", "for", "while", "raise", "try", "with")
MAX_SIGNATURE_CHARS = 300


@dataclass
class Signature:
    header: str  # from the `def` line's indentation to its closing colon, no trailing newline
    body: str  # the original body, for the expected keywords
    name: str


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def signatures_in(source: str) -> list[Signature]:
    """Every function signature in a Python source whose body starts on a line of its own."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.body[0].lineno == node.lineno:
            continue
        header_lines = lines[node.lineno - 1 : node.body[0].lineno - 1]
        while header_lines and (not header_lines[-1].strip() or header_lines[-1].lstrip().startswith("#")):
            header_lines.pop()  # comment lines between the signature and the body
        header = "\n".join(header_lines)
        if not header.rstrip().endswith(":") or len(header) > MAX_SIGNATURE_CHARS:
            continue  # a comment after the colon, or a signature too long for a prompt
        header = header.rstrip()
        try:
            ast.parse(textwrap.dedent(header) + "\n    pass\n")
        except SyntaxError:
            continue
        body = "\n".join(lines[node.body[0].lineno - 1 : node.end_lineno])
        found.append(Signature(header, body, node.name))
    return found


def held_out_signatures(count: int = 50, seed: int = 0, data: str | None = None) -> list[Signature]:
    """A seeded sample of `count` signatures from the validation split of `data` (None: built-in)."""
    _, val_docs = split_documents(load_corpus(data))
    pool = [sig for doc in val_docs for sig in signatures_in(doc)]
    if not pool:
        raise ValueError("no Python function signatures in the validation split: codecheck needs Python source")
    random.Random(seed).shuffle(pool)
    return pool[:count]


def keywords_used(source: str) -> set[str]:
    """The KEYWORDS that appear as code (not in strings or comments), read up to the first error."""
    found = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NAME and tok.string in KEYWORDS:
                found.add(tok.string)
    except (tokenize.TokenError, SyntaxError):
        pass
    return found


def extract_function(header: str, generated: str, truncated: bool) -> tuple[str, int]:
    """Rule 1: the function as source text, and its number of non-blank body lines."""
    def_indent = _indent(header.splitlines()[0])
    lines = generated.split("\n")
    first = lines[0]  # the rest of the signature's last line (normally empty: the model writes "\n" next)
    body, closed = [], False
    for line in lines[1:]:
        if line.strip() and _indent(line) <= def_indent:
            closed = True
            break
        body.append(line)
    if truncated and not closed and body:
        body.pop()
    while body and not body[-1].strip():
        body.pop()
    return "\n".join([header + first, *body]), sum(1 for line in body if line.strip())


def judge(header: str, generated: str, truncated: bool, expected: set[str]) -> dict:
    """Rules 1-4 for one completion."""
    source, body_lines = extract_function(header, generated, truncated)
    tree = None
    if body_lines:
        candidates = [source]
        last = source.rstrip().splitlines()[-1]
        if last.split("#")[0].rstrip().endswith(":"):
            candidates.append(source + "\n" + " " * (_indent(last) + 4) + "pass")
        for candidate in candidates:
            try:
                tree = ast.parse(textwrap.dedent(candidate))
                break
            except (SyntaxError, ValueError):
                continue
    function = tree.body[0] if tree is not None and tree.body else None
    body_text = "\n".join(source.splitlines()[len(header.splitlines()) :])
    used = keywords_used(textwrap.dedent(body_text))
    return {
        "parses": tree is not None,
        "docstring": isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        and ast.get_docstring(function) is not None,
        "body_lines": body_lines,
        "expected": sorted(expected),
        "used": sorted(used),
        "recall": len(expected & used) / len(expected) if expected else None,
        "completion": source,
    }


def complete(
    model: Model,
    tokenizer: Tokenizer,
    signatures: list[Signature],
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 16,
) -> list[dict]:
    """Generate a body for every signature and judge it; one record per signature."""
    records = []
    for b in range(0, len(signatures), batch_size):
        chunk = signatures[b : b + batch_size]
        prompts = [tokenizer.encode(s.header) for s in chunk]
        outputs = generate(
            model,
            prompts,
            max_new_tokens,
            temperature=temperature,
            top_k=40 if temperature else None,
            seed=seed + b,
            stop_token=tokenizer.eot_id,
        )
        for sig, out in zip(chunk, outputs):
            truncated = len(out) == max_new_tokens
            expected = keywords_used(textwrap.dedent(sig.body))
            records.append({"name": sig.name, **judge(sig.header, tokenizer.decode(out), truncated, expected)})
    return records


def summarize(records: list[dict]) -> dict:
    """Shares over all completions (recall over those whose original uses any keyword)."""
    recalls = [r["recall"] for r in records if r["recall"] is not None]
    returning = [r for r in records if "return" in r["expected"]]
    return {
        "completions": len(records),
        "parses": float(np.mean([r["parses"] for r in records])),
        "docstring": float(np.mean([r["docstring"] for r in records])),
        "keyword_recall": float(np.mean(recalls)) if recalls else None,
        "returns_where_original_does": float(np.mean([("return" in r["used"]) for r in returning]))
        if returning
        else None,
        "mean_body_lines": float(np.mean([r["body_lines"] for r in records])),
    }


def reference_summary(signatures: list[Signature]) -> dict:
    """The same measures on the original functions, as the ceiling to compare with."""
    records = [judge(s.header, "\n" + s.body, False, keywords_used(textwrap.dedent(s.body))) for s in signatures]
    return summarize(records)


def format_table(columns: dict[str, dict]) -> str:
    """Rows of measures, one column per model ("trained", "untrained", "original")."""
    rows = [
        ("parses (ast)", "parses"),
        ("has a docstring", "docstring"),
        ("expected keywords used", "keyword_recall"),
        ("returns where the original does", "returns_where_original_does"),
        ("body lines (mean)", "mean_body_lines"),
    ]
    names = list(columns)
    lines = [f"{'':<34}" + "".join(f"{n:>11}" for n in names)]
    for label, key in rows:
        cells = []
        for n in names:
            v = columns[n].get(key)
            cells.append(f"{'-':>11}" if v is None else f"{v:>11.2f}" if key == "mean_body_lines" else f"{v:>11.1%}")
        lines.append(f"{label:<34}" + "".join(cells))
    return "\n".join(lines)
