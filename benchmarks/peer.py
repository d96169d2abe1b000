"""The peer: Hugging Face `transformers` `GPT2LMHeadModel` (or `LlamaForCausalLM`, for a configuration of
Llama options such as `--config llama-tiny`) with our configuration and our weights.

It is what a plain eager PyTorch GPT-2 looks like in practice, timed exactly as our models are:
a training step (forward, cross-entropy on the same targets, backward, clipping to 1.0, AdamW with
decay on 2-D weights only, `torch.optim.AdamW` at its defaults otherwise) and greedy `generate`
with its own KV cache (`use_cache=True`), for the same prompts and number of new tokens. Our
weights are mapped with `core.convert.huggingface.to_hf_gpt2` (`core.convert.llama.to_hf_llama`), so its
greedy tokens can be compared with ours.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from benchmarks.common import torch_sync
from core.convert.huggingface import hf_class, to_hf_gpt2
from core.convert.llama import to_hf_llama
from core.model.config import GPTConfig, TrainConfig
from core.model.params import decays


def available() -> bool:
    return importlib.util.find_spec("transformers") is not None and importlib.util.find_spec("torch") is not None


class _FirstToken:
    """A `generate` streamer that notes when the first new token arrives (its first `put` is the prompt)."""

    def __init__(self):
        self.calls, self.at = 0, None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2:
            self.at = time.perf_counter()

    def end(self) -> None:
        pass


class HFPeer:
    def __init__(self, config: GPTConfig, params: dict[str, np.ndarray], device: str, train: TrainConfig):
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
        from transformers.utils import logging

        logging.set_verbosity_error()  # no notes about generation defaults on every call
        self.torch, self.device, self.train = torch, torch.device(device), train
        if hf_class(config) == "LlamaForCausalLM":
            state, hf_config = to_hf_llama(config, params)
            self.model = LlamaForCausalLM(LlamaConfig(**hf_config)).to(self.device)
        else:
            state, hf_config = to_hf_gpt2(config, params)
            hf_config.update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # our models train without dropout too
            self.model = GPT2LMHeadModel(GPT2Config(**hf_config)).to(self.device)
        weights = {k: torch.from_numpy(v) for k, v in state.items()}
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)  # tied: lm_head is wte
        named = dict(self.model.named_parameters())
        groups = [
            {"params": [p for n, p in named.items() if decays(n, p.shape)], "weight_decay": train.weight_decay},
            {"params": [p for n, p in named.items() if not decays(n, p.shape)], "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2), eps=train.eps)

    def versions(self) -> dict[str, str]:
        import transformers

        return {"transformers": transformers.__version__, "attention": self.model.config._attn_implementation}

    def train_step(self, tokens: np.ndarray, targets: np.ndarray, lr: float) -> float:
        torch = self.torch
        x = torch.from_numpy(np.asarray(tokens, dtype=np.int64)).to(self.device)
        y = torch.from_numpy(np.asarray(targets, dtype=np.int64)).to(self.device)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return loss.item()

    def generate(self, prompts: np.ndarray, new_tokens: int) -> tuple[list[list[int]], float]:
        """Greedy continuation of equal-length prompts; the new tokens and the seconds to the first one."""
        torch = self.torch
        self.model.eval()
        ids = torch.from_numpy(np.asarray(prompts, dtype=np.int64)).to(self.device)
        streamer, start = _FirstToken(), time.perf_counter()
        with torch.no_grad():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
                streamer=streamer,
            )
        torch_sync(self.device)
        return out[:, ids.shape[1] :].tolist(), (streamer.at or time.perf_counter()) - start
