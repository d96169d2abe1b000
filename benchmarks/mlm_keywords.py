"""How well a masked-token model fills in hidden Python keywords in held-out standard-library code.

    python -m benchmarks.mlm_keywords --checkpoint runs/mlm-demo --backend torch

For each held-out (validation-split) file, windows of `block_size` tokens are centred on a keyword
token (`def`, `return`, `import`, ...); that one token is replaced by [MASK] and the model's most
likely filler is compared with it. Chance is reported two ways: 1 / vocabulary size, and always
guessing the most common keyword. Results go to benchmarks/results/mlm_keywords-<backend>.json/.md.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections import Counter
from pathlib import Path

import numpy as np

from backends import get_backend
from core.data.corpus import load_corpus, split_documents
from core.generate.session import Session

KEYWORDS = ("def", "return", "import", "from", "class", "if", "else", "for", "in", "self", "None", "not", "is")
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--device", default=None)
    parser.add_argument("--windows", type=int, default=400, help="masked windows to score")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    backend = get_backend(args.backend, args.device)
    session = Session.open(backend, args.checkpoint, "best")
    model, tok, T = session.model, session.tokenizer, session.checkpoint.config.block_size
    if model.config.causal:
        raise SystemExit("error: this checkpoint is not a masked-token model: train one with --objective mlm")
    keyword_ids = {i: tok.decode([i]).strip() for i in range(tok.vocab_size) if tok.decode([i]).strip() in KEYWORDS}
    _, val_docs = split_documents(load_corpus(None))
    rng = np.random.default_rng(args.seed)
    windows, targets = [], []
    for doc in rng.permutation(len(val_docs)):
        ids = tok.encode(val_docs[doc])
        spots = [p for p in range(T // 2, len(ids) - T // 2) if ids[p] in keyword_ids]
        for p in rng.permutation(spots)[:4]:
            window = list(ids[p - T // 2 : p - T // 2 + T])
            targets.append(window[T // 2])
            window[T // 2] = tok.mask_id
            windows.append(window)
        if len(windows) >= args.windows:
            break
    windows, targets = np.array(windows[: args.windows]), np.array(targets[: args.windows])
    batches = [windows[i : i + 16] for i in range(0, len(windows), 16)]
    predictions = np.concatenate([model.logits(batch)[:, T // 2].argmax(-1) for batch in batches])
    accuracy = float((predictions == targets).mean())
    majority = Counter(targets.tolist()).most_common(1)[0]
    by_keyword = {}
    for kid in sorted(set(targets.tolist()), key=lambda k: -int((targets == k).sum())):
        hit = targets == kid
        by_keyword[repr(tok.decode([kid]))] = {"n": int(hit.sum()), "accuracy": float((predictions[hit] == kid).mean())}
    result = {
        "checkpoint": str(session.checkpoint.path), "step": session.checkpoint.step, "backend": backend.name,
        "device": str(backend.device), "versions": backend.versions(), "machine": platform.platform(),
        "windows": len(targets), "accuracy": accuracy, "chance_uniform": 1 / tok.vocab_size,
        "chance_majority_keyword": majority[1] / len(targets), "by_keyword": by_keyword,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"mlm_keywords-{backend.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Masked Python keywords in held-out code: {backend.name}",
        "",
        f"Checkpoint `{result['checkpoint']}` (step {result['step']}), {len(targets)} windows of {T} tokens from "
        "validation-split standard-library files, one keyword token masked in the middle of each.",
        "",
        f"Top-1 accuracy **{accuracy:.1%}**; chance: {1 / tok.vocab_size:.3%} (uniform over the vocabulary), "
        f"{majority[1] / len(targets):.1%} (always the most common keyword, {tok.decode([majority[0]])!r}).",
        "",
        "| keyword | windows | top-1 accuracy |",
        "| --- | ---: | ---: |",
        *[f"| {k} | {v['n']} | {v['accuracy']:.1%} |" for k, v in by_keyword.items()],
    ]
    (RESULTS / f"mlm_keywords-{backend.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
