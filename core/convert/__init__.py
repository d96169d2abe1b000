"""Checkpoint conversions in numpy: Hugging Face GPT-2 interop and int8 quantization."""
