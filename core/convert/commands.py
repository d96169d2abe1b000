"""The conversion commands (export-hf, import-hf, quantize) as functions of plain values: each reads
one model folder and writes another, numpy in and numpy out, no backend. The command line only
parses flags and calls these."""

from __future__ import annotations

from pathlib import Path

from core.cli.invocation import command


def new_folder(out: str) -> Path:
    """--out of a conversion: a new folder, or a checkpoint folder to overwrite; never another folder's files."""
    path = Path(out)
    if path.exists() and any(path.iterdir()) and not (path / "meta.json").exists():
        raise ValueError(f"{path} exists and is not a checkpoint folder: pass --out with a new folder")
    return path


def export_hf(checkpoint: str, step: str, out: str) -> int:
    from core.convert.huggingface import export_hf_folder
    from core.train.checkpoint import load_best_or_last

    loaded = load_best_or_last(checkpoint, step)
    folder = export_hf_folder(loaded, out)
    print(f"exported {loaded.path} (step {loaded.step}) to {folder}")
    print(f"load it with: GPT2LMHeadModel.from_pretrained({str(folder)!r})")
    if loaded.tokenizer_json is None:
        print("note: the checkpoint has no tokenizer, so no tokenizer.json was written")
    return 0


def import_hf(model: str, out: str) -> int:
    from core.convert.huggingface import import_hf_folder
    from core.model.params import count_params
    from core.train.checkpoint import save_checkpoint

    folder = new_folder(out)
    checkpoint, note = import_hf_folder(model)
    save_checkpoint(folder, checkpoint)
    c = checkpoint.config
    print(f"imported {model}: {count_params(c):,} parameters ({c.n_layer} layers, {c.n_embd} dims)")
    print(note)
    print(f"generate with: {command('generate', '--checkpoint', folder)}")
    return 0


def quantize(checkpoint: str, step: str, out: str, float_embeddings: bool = False) -> int:
    from core.convert.quantize_checkpoint import quantize_checkpoint
    from core.train.checkpoint import MODEL_FILE, load_best_or_last, save_checkpoint

    folder = new_folder(out)
    loaded = load_best_or_last(checkpoint, step)
    if folder.resolve() == loaded.path.resolve():
        raise ValueError(f"--out {folder} is the checkpoint being quantized: pass a new folder")
    save_checkpoint(folder, quantize_checkpoint(loaded, embeddings=not float_embeddings))
    before, after = (loaded.path / MODEL_FILE).stat().st_size, (folder / MODEL_FILE).stat().st_size
    print(f"int8 checkpoint of {loaded.path} (step {loaded.step}) in {folder}")
    print(f"{MODEL_FILE}: {after / 1e6:.2f} MB, {after / before:.0%} of the float32 {before / 1e6:.2f} MB")
    print(f"generate with: {command('generate', '--checkpoint', folder)}")
    return 0
