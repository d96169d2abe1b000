"""Evaluation and analysis of a trained model: scores, metrics, perplexity, LAMBADA, bidirectional
and attention analyses, code checks, and the commands that run them."""
