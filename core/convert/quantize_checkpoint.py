"""A checkpoint turned into its int8 inference-only copy (`quantize` command): the weights go through
`core.convert.quantize`, the metadata records what was done and from where.

Kept apart from the int8 maths so that `core.train.checkpoint` can validate int8 params without a
cycle back through this module.
"""

from __future__ import annotations

from core.convert.quantize import quantize_params, quantized_modules
from core.train.checkpoint import Checkpoint


def quantize_checkpoint(checkpoint: Checkpoint, embeddings: bool = True) -> Checkpoint:
    """An inference-only `Checkpoint` with int8 weights; meta.json records `"quantization": "int8"`."""
    if checkpoint.meta.quantization:
        raise ValueError(f"checkpoint {checkpoint.path} is already quantized ({checkpoint.meta.quantization})")
    params = quantize_params(checkpoint.params, embeddings=embeddings)
    meta = checkpoint.meta.replace(
        quantization="int8",
        quantized_modules=len(quantized_modules(params)),
        quantized_embeddings=embeddings,
        quantized_from=str(checkpoint.path) if checkpoint.path else None,
    )
    return Checkpoint(checkpoint.config, params, meta, checkpoint.tokenizer_json, None)
