"""Speed measurements of both backends and a Hugging Face peer: `python -m benchmarks --help`."""
