"""`--explain`: the teaching narrative of a training run, with this run's real numbers and shapes."""

from __future__ import annotations

import math

from core.model.config import GPTConfig, TrainConfig
from core.model.params import count_params


def explain(config: GPTConfig, train: TrainConfig, tokenizer_kind: str, n_train_tokens: int) -> str:
    B, T, C, V = train.batch_size, config.block_size, config.n_embd, config.vocab_size
    H, D, L = config.n_head, config.head_size, config.n_layer
    return f"""\
How this run works
==================
1. Tokenize. The text becomes integers: a {tokenizer_kind} tokenizer maps it to ids in [0, {V}).
   The training split holds {n_train_tokens:,} tokens; documents are separated by <|endoftext|>.
2. Batch. Each step draws {B} random windows of {T + 1} tokens. The first {T} are the input x (B, T)
   = ({B}, {T}); the same windows shifted by one are the targets y: at every position the model must
   predict the token that comes next.
3. Embed. Each id picks a row of the token embedding wte ({V}, {C}); each position a row of the
   position embedding wpe ({T}, {C}). Their sum is the residual stream x: (B, T, C) = ({B}, {T}, {C}).
4. Attend, {L} times. LayerNorm, then one matrix makes queries, keys and values (B, T, 3C), split
   into {H} heads of {D} dims: (B, {H}, T, {D}). Each position scores every earlier position
   (q·k / sqrt({D})), the future is masked out, a softmax turns scores into weights (B, {H}, T, T), and
   the weighted sum of values is projected back to (B, T, C) and added to the stream.
5. Think, {L} times. LayerNorm, then an MLP widens each position to {config.mlp_hidden} dims, applies GELU
   and narrows back to {C}, added to the stream. (Steps 4-5 together are one block.)
6. Predict. A final LayerNorm, then the stream times wte transposed gives logits (B, T, {V}): a score
   for every possible next token at every position.
7. Learn. Cross-entropy between logits and targets is the loss (a random model scores about
   ln({V}) = {math.log(V):.2f}). Backpropagation gives each of the {count_params(config):,} parameters a
   gradient; the gradients are clipped to norm {train.grad_clip}, and AdamW (betas {train.beta1}/{train.beta2},
   weight decay {train.weight_decay} on matrices) takes a step whose size follows the schedule: warmup for
   {train.warmup_steps} steps to {train.lr}, then {train.schedule} decay to {train.min_lr} by step {train.steps}.
8. Check. Every {train.eval_every} steps the loss on held-out text (the validation split) is measured and
   a sample is generated one token at a time, each new token fed back in as input.
"""
