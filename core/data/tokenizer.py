"""Text <-> token ids: a byte-level BPE tokenizer and a character tokenizer behind one interface.

The model only ever sees integers; this module decides which integers. Two kinds:

- `bpe` (the default): Hugging Face `tokenizers` byte-level BPE, GPT-2's scheme. Its alphabet is
  all 256 bytes, so every string round-trips exactly, and frequent words become single tokens
  ("Once" is one token, not four letters). Its `to_json` is the `tokenizers` JSON itself, so a saved
  `tokenizer.json` also loads in Hugging Face's `PreTrainedTokenizerFast`.
- `char`: one token per character of the training text, as nanoGPT's shakespeare_char. Tiny
  vocabulary, good for the teaching example, but it cannot encode a character it has never seen.

Both reserve `<|endoftext|>` (`eot_id`) to separate documents and `[MASK]` (`mask_id`) for
masked-token training. Conventions shared by both kinds:

- `encode(text)` treats every character of `text` as text: the string "<|endoftext|>" inside a
  document is spelled out, never turned into `eot_id`. Only the data pipeline inserts `eot_id`.
- `decode(ids)` drops nothing: `eot_id` decodes to the text "<|endoftext|>" (Hugging Face's
  `skip_special_tokens=False`), so `decode(encode(text)) == text` for every text a tokenizer can
  encode, and generated text shows where the model ended a document. Ids outside the vocabulary are
  a ValueError rather than silently dropped (a model with a padded vocabulary can sample them).
- Decoding a slice that cuts a multi-byte character in half gives U+FFFD for the broken bytes (bpe).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Protocol

EOT = "<|endoftext|>"  # document separator, GPT-2's spelling
MASK = "[MASK]"  # stands in for hidden tokens in masked-token training (--objective mlm)
SPECIAL_TOKENS = [EOT, MASK]
KINDS = ("bpe", "char")


class Tokenizer(Protocol):
    kind: str  # "bpe" or "char"
    vocab_size: int  # number of ids, special tokens included; ids are 0 .. vocab_size-1
    eot_id: int  # id of "<|endoftext|>", the document separator
    mask_id: int | None  # id of "[MASK]" when the vocabulary has one, else None

    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def to_json(self) -> str:
        """Everything needed to rebuild the tokenizer with `tokenizer_from_json`."""
        ...


def _check_ids(ids: Sequence[int], vocab_size: int) -> list[int]:
    ids = [int(i) for i in ids]  # also accepts numpy arrays and numpy integers
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"token ids {bad[:5]} are outside the vocabulary (0 .. {vocab_size - 1})")
    return ids


class BPETokenizer:
    """Byte-level BPE (GPT-2's scheme) backed by a Hugging Face `tokenizers.Tokenizer`."""

    kind = "bpe"

    def __init__(self, tk) -> None:
        eot_id = tk.token_to_id(EOT)
        if eot_id is None:
            raise ValueError(f"this BPE tokenizer has no {EOT!r} token: train one with train_tokenizer('bpe', ...)")
        # Text that happens to contain "<|endoftext|>" stays text; only the pipeline inserts eot_id.
        # (Not stored in the JSON, so it is set again on every load.)
        tk.encode_special_tokens = True
        self._tk = tk
        self.vocab_size: int = tk.get_vocab_size(with_added_tokens=True)
        self.eot_id: int = eot_id
        self.mask_id: int | None = tk.token_to_id(MASK)

    def encode(self, text: str) -> list[int]:
        return self._tk.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # Rust threads over the texts: the fast path for a whole corpus.
        return [e.ids for e in self._tk.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tk.decode(_check_ids(ids, self.vocab_size), skip_special_tokens=False)

    def to_json(self) -> str:
        return self._tk.to_str()

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


class CharTokenizer:
    """One id per character: the sorted characters of the training text, then the special tokens."""

    kind = "char"

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars: list[str] = sorted(set(chars))
        if any(len(c) != 1 for c in self.chars):
            raise ValueError("a char tokenizer's alphabet must be single characters")
        self._stoi = {c: i for i, c in enumerate(self.chars)}
        # Special tokens follow the characters, so character ids do not depend on them.
        self._itos = self.chars + SPECIAL_TOKENS
        self.vocab_size: int = len(self._itos)
        self.eot_id: int = len(self.chars) + SPECIAL_TOKENS.index(EOT)
        self.mask_id: int | None = len(self.chars) + SPECIAL_TOKENS.index(MASK)

    def encode(self, text: str) -> list[int]:
        stoi = self._stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in stoi})
            shown = ", ".join(repr(c) for c in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise ValueError(
                f"the char tokenizer has never seen {len(unknown)} character(s) in this text: {shown}; "
                "use the bpe tokenizer (it encodes any text) or retrain the char tokenizer on data that contains them"
            ) from None

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        itos = self._itos
        return "".join(itos[i] for i in _check_ids(ids, self.vocab_size))

    def to_json(self) -> str:
        return json.dumps({"kind": "char", "chars": self.chars, "special_tokens": SPECIAL_TOKENS})

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def min_vocab_size(kind: str) -> int:
    """Smallest vocabulary `train_tokenizer` accepts for this kind (bpe: 256 bytes + special tokens)."""
    return 256 + len(SPECIAL_TOKENS) if kind == "bpe" else 1 + len(SPECIAL_TOKENS)


def train_tokenizer(kind: str, texts: Iterable[str], vocab_size: int = 8192) -> Tokenizer:
    """Build a tokenizer of `kind` from `texts`.

    bpe: learns merges until the vocabulary has `vocab_size` ids (fewer if the texts run out of
    pairs to merge: read `.vocab_size` for the real number). char: `vocab_size` is ignored, the
    alphabet of the texts decides it.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}: choose one of {', '.join(KINDS)}")
    if kind == "char":
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        if not chars:
            raise ValueError("no characters to build a char tokenizer from: pass non-empty texts")
        return CharTokenizer(chars)

    if vocab_size < min_vocab_size("bpe"):
        raise ValueError(
            f"vocab_size={vocab_size} is too small for a byte-level BPE tokenizer: use at least "
            f"{min_vocab_size('bpe')} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)"
        )
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tk = HFTokenizer(models.BPE())
    # GPT-2's split into words, numbers and punctuation, on bytes mapped to printable characters.
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
        show_progress=False,
    )
    tk.train_from_iterator(texts, trainer)
    return BPETokenizer(tk)


def tokenizer_from_json(s: str) -> Tokenizer:
    """Rebuild a tokenizer from `to_json` output; the kind is read from the JSON itself."""
    try:
        data = json.loads(s)
    except json.JSONDecodeError as e:
        raise ValueError(f"not a tokenizer JSON ({e})") from None
    if isinstance(data, dict) and data.get("kind") == "char":
        return CharTokenizer(data["chars"])
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and data["model"].get("type") == "BPE":
        from tokenizers import Tokenizer as HFTokenizer

        return BPETokenizer(HFTokenizer.from_str(s))
    raise ValueError("unrecognised tokenizer JSON: expected a char tokenizer or a Hugging Face BPE tokenizer.json")

