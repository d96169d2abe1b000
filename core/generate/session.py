"""A trained model ready to talk to: a checkpoint loaded on a backend, its tokenizer, and the
sampling settings. The `generate` command and the chat loop (`core.generate.chat`) are thin layers
over this; text streams out through `core.generate.stream`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.data.tokenizer import Tokenizer, tokenizer_from_json
from core.generate.generation import TokenCallback, generate
from core.generate.sampling import SamplingConfig
from core.generate.stream import TextStream
from core.model.config import TrainConfig
from core.model.context import crop_context
from core.model.interface import Backend, Model
from core.train.checkpoint import Checkpoint, load_best_or_last


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
        stream = TextStream(self.tokenizer, write)
        new, stats = self.generate_ids(ids, lambda row, token: stream.add(token))
        text = stream.finish(new)
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
