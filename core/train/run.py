"""A training run from start to finish, as the command line starts it: data, model config, the
report a user reads, the loop, the training curve and the closing summary.

`train_next_word_prediction.py` turns flags into the plain values taken here; `core.train.loop` runs
the steps. Rank 0 of a data-parallel job speaks and writes; the other processes only train.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.cli.invocation import command
from core.data.batches import check_length
from core.data.dataset import DataSettings, prepare_dataset
from core.data.direction import BACKWARD, FORWARD
from core.data.tokenizer import tokenizer_from_json
from core.evaluate.metrics import unigram_loss
from core.model.config import GPTConfig, TrainConfig
from core.model.interface import Backend
from core.model.lora import LoraConfig, count_trainable, init_adapters
from core.model.params import count_params
from core.plots.training_curve import plot_training_curve
from core.train.checkpoint import Checkpoint
from core.train.explain import explain
from core.train.init_from import InitialWeights, check_init_matches
from core.train.loop import train
from core.train.lora_checkpoint import LoraStart, base_reference
from core.train.meta import CheckpointMeta
from core.train.resume import check_same_vocabulary
from core.train.run_config import CONFIG_FILE, write_run_config


def save_effective_config(run_dir: Path, backend: str, settings: DataSettings, config: GPTConfig, tc: TrainConfig,
                          sample_tokens: int, extra: dict | None = None) -> Path:
    """config.toml: every setting of the run under its flag's name (the vocabulary is the tokenizer's to decide)."""
    model = {k: v for k, v in config.to_dict().items() if k != "vocab_size"}
    header = f"The settings of this run. Repeat it with: {command('--config', run_dir / CONFIG_FILE, '--out', 'NEW')}"
    run = {"backend": backend, "sample_tokens": sample_tokens, **(extra or {})}
    groups = {"run": run, "data": dict(vars(settings)), "model": model, "train": tc.to_dict()}
    return write_run_config(run_dir / CONFIG_FILE, groups, header)


def check_writable(run_dir: Path) -> None:
    """Refuse a run folder that cannot be written, without creating anything: a failed start (bad
    data, a bad model shape) must leave no empty run folder behind. The folder is made when training starts."""
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())  # "." and "/" always do
    reason = None
    if not existing.is_dir():
        reason = f"{existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"{existing} is not writable"
    if reason:
        raise ValueError(f"cannot write to the run folder {run_dir} ({reason}): pass --out with a writable folder")


def plan(config: GPTConfig, tc: TrainConfig, settings: DataSettings, run_dir: Path, world: int = 1) -> str:
    """What a run is about to do, printed before the data step (the slowest part of a first start)."""
    data = settings.data or "the built-in corpus (this Python's standard library source; cached after the first run)"
    size = (f"{count_params(config):,} parameters, " if settings.tokenizer == "bpe" else "") + (
        f"{config.n_layer} layers x {config.n_embd} dims")
    tokens = tc.batch_size * tc.grad_accum * world * config.block_size
    return (f"about to train a model of {size} for {tc.steps:,} steps of {tokens:,} tokens ({settings.tokenizer} "
            f"tokenizer) on {data}{f', at most {settings.max_data_mb} MB' if settings.max_data_mb else ''}; "
            f"run folder {run_dir}")


def make_sampler(tokenizer, max_new_tokens: int, seed: int, reverse: bool = False):
    """A short sampled continuation of an empty document, shown at each evaluation."""
    from core.generate.generation import generate, generate_text

    def sample(model, step: int) -> str:
        if reverse:  # a backward model writes a document's end first: decode its tokens in text order
            ids = [tokenizer.eot_id]
            new = generate(model, [ids], max_new_tokens, 0.8, 40, seed=seed + step, stop_token=tokenizer.eot_id)[0]
            return tokenizer.decode(new[::-1])
        return generate_text(model, tokenizer, [""], max_new_tokens, temperature=0.8, top_k=40, seed=seed + step)[0]

    return sample


def lora_start(resume: Checkpoint | None, init: InitialWeights | None, lora: LoraConfig | None, config: GPTConfig,
               seed: int) -> LoraStart | None:
    """A LoRA run's config, base and first adapters: fresh ones on `init`, or the resumed checkpoint's own."""
    if resume is not None and resume.meta.lora:
        return LoraStart(LoraConfig.from_dict(resume.meta.lora), resume.meta.lora_base, resume.adapters)
    if lora is None or init is None:
        return None
    base = base_reference(init.folder or init.source)
    return LoraStart(lora, base, init_adapters(config, lora, init.params, seed))


def run_training(
    backend: Backend,
    model_fields: dict | None,
    train_config: TrainConfig,
    settings: DataSettings,
    run_dir: Path,
    resume: Checkpoint | None = None,
    show_explanation: bool = False,
    progress: bool = True,
    sample_tokens: int = 48,
    init: InitialWeights | None = None,
    tensorboard: bool = False,
    lora: LoraConfig | None = None,
) -> int:
    """Prepare the data, finish the model config (`model_fields`; the tokenizer sets the vocabulary),
    train, and report. With `resume`, its config and tokenizer are used instead; with `init`
    (fine-tuning), its config, tokenizer and weights, with a fresh optimizer and schedule; with `init`
    and `lora`, LoRA adapters on its frozen weights (a resumed LoRA run keeps its own)."""
    from core.data.direction import reverse_tokens

    if init is not None:
        check_init_matches(init, train_config, settings)
    if resume is None:  # the model's shape checked before the slow data step (the tokenizer sets the vocabulary)
        planned = init.config if init else GPTConfig(**{**model_fields, "vocab_size": settings.vocab_size})
        if backend.rank == 0:
            print(plan(planned, train_config, settings, run_dir, backend.world_size), flush=True)
    start_from = resume or init  # where the tokenizer (and the model config) come from, if anywhere
    tokenizer = tokenizer_from_json(start_from.tokenizer_json) if start_from else None
    max_bytes = int(settings.max_data_mb * 1e6) if settings.max_data_mb else None
    data = prepare_dataset(settings.data, tokenizer_kind=settings.tokenizer, vocab_size=settings.vocab_size,
                           tokenizer=tokenizer, max_bytes=max_bytes)
    if init is not None:
        config = init.config
    elif resume is None:
        fields = {**model_fields, "vocab_size": data.tokenizer.vocab_size}  # the tokenizer decides the vocabulary
        if train_config.objective == "mlm":  # masked-token filling reads both directions
            if fields.get("causal"):
                raise ValueError("--objective mlm needs a bidirectional model: drop --causal")
            fields["causal"] = False
        config = GPTConfig(**fields)
    else:
        config = resume.config
        check_same_vocabulary(data.tokenizer.vocab_size, config)
    if settings.reverse:  # a backward model: the same pipeline on the token streams read from the end
        data.train, data.val = reverse_tokens(data.train), reverse_tokens(data.val)
    check_length(data.train, config.block_size, "training")
    check_length(data.val, config.block_size, "validation")
    adapting = lora_start(resume, init, lora, config, train_config.seed)
    if backend.rank != 0:  # data-parallel helpers train silently; rank 0 reports and writes
        train(backend, config, train_config, data, run_dir, resume=resume, progress=False,
              initial_params=init.params if init else None, lora=adapting)
        return 0

    tc, world = train_config, backend.world_size
    baseline = unigram_loss(data.train, data.val, config.vocab_size)
    print(f"corpus: {data.description}")
    if data.skip_summary:  # files left out are reported, never silent
        print(f"corpus: {data.skip_summary}")
    print(f"tokens: {len(data.train):,} train, {len(data.val):,} validation ({data.tokenizer.kind} tokenizer, "
          f"vocabulary {config.vocab_size:,})")
    print(f"model: {count_params(config):,} parameters ({config.n_layer} layers, {config.n_head} heads, "
          f"{config.n_embd} dims, context {config.block_size})")
    if adapting is not None:
        trainable, lora = count_trainable(config, adapting.config), adapting.config
        print(f"LoRA: {trainable:,} trainable parameters ({100 * trainable / count_params(config):.2f}%; rank "
              f"{lora.rank}, alpha {lora.alpha:g}, on {', '.join(lora.targets)}); the base stays frozen in "
              f"{adapting.base['path']}")
    print(f"run folder: {run_dir}" + (f" (resuming at step {resume.step})" if resume else ""))
    print(f"global batch: {tc.batch_size} sequences x {tc.grad_accum} accumulation x {world} process(es) = "
          f"{tc.batch_size * tc.grad_accum * world * config.block_size:,} tokens per step; peak learning rate {tc.lr}")
    if show_explanation:
        print(explain(config, tc, data.tokenizer.kind, len(data.train)))

    resume_command = command("--backend", backend.name, "--resume", run_dir)
    if resume is None:  # what `--config run_dir/config.toml` needs to repeat this run
        run_dir.mkdir(parents=True, exist_ok=True)  # only now: everything above has been checked
        extra = {"tensorboard": tensorboard, **({"init_from": init.source} if init else {}),
                 **({f"lora_{k}": ",".join(v) if k == "targets" else v for k, v in lora.to_dict().items()}
                    if lora else {})}
        save_effective_config(run_dir, backend.name, settings, config, tc, sample_tokens, extra)
    meta = CheckpointMeta(
        run_settings={"data": settings.data, "tokenizer": settings.tokenizer, "max_data_mb": settings.max_data_mb},
        corpus=data.description,
        resume_command=resume_command,
        direction=BACKWARD if settings.reverse else FORWARD,
        init_from=init.source if init else (resume.meta.init_from if resume else None),
    )
    # A bidirectional model fills masks (predict-masked); it does not continue text.
    sample = None if tc.objective == "mlm" else make_sampler(data.tokenizer, sample_tokens, tc.seed, settings.reverse)
    if init is not None:
        print(f"fine-tuning from {init.source}: its weights and tokenizer, a fresh optimizer and schedule")
    result = train(backend, config, tc, data, run_dir, resume=resume, meta=meta, sample=sample, progress=progress,
                   initial_params=init.params if init else None, tensorboard=tensorboard, lora=adapting)

    if (run_dir / "metrics.jsonl").exists():
        plot_training_curve(run_dir / "metrics.jsonl", run_dir / "training_curve.png", baseline)
    print(f"\n{result.stopped} after {result.steps_done} steps; run folder {run_dir}")
    if result.last_val:
        print(f"validation loss {result.last_val['loss']:.4f} (best {result.best_val_loss:.4f}) "
              f"vs unigram baseline {baseline:.4f}; perplexity {result.last_val['perplexity']:.1f}")
    if result.stopped == "interrupted":
        print(f"resume with: {resume_command}")
    print(f"files: config.toml, checkpoints/, metrics.jsonl, training_curve.png in {run_dir}")
    return 0 if result.stopped != "non-finite loss" else 1
