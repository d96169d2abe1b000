"""Training: the loop, the learning-rate schedule, checkpoints, and a run from start to finish."""
