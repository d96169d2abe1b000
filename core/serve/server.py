"""`serve`: load a checkpoint, start the batcher, run the HTTP app with uvicorn (loopback by default).

`start_background` runs the same server in a thread of the calling process on a given port, for
tests and the load benchmark; `serve` runs it in the foreground until Ctrl-C.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import uvicorn

from core.data.direction import BACKWARD
from core.generate.session import Session
from core.model.interface import Backend
from core.model.params import check_servable
from core.serve.app import create_app
from core.serve.batcher import Batcher
from core.serve.completions import Served


def leave_a_core() -> int:
    """Give the model's CPU threads one core fewer than the machine has (at least one), unless
    OMP_NUM_THREADS says otherwise; returns the count. Call before the backend is imported: torch reads it
    then. Why: the event loop (HTTP, tokens to text, JSON) needs a core of its own between decode steps.
    With as many OpenMP threads as cores, every small op of a decode step waits for a thread the
    event loop (or another process) has displaced; on a 2-core machine that made one decode step of
    8 rows 5 to 50 times slower (benchmarks/results/profile-serve-torch.md)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) - 1)))
    return int(os.environ["OMP_NUM_THREADS"])


def load(backend: Backend, checkpoint: str, step: str = "best", slots: int = 8,
         max_tokens_limit: int | None = None, fill_mask: bool = False) -> Served:
    """The model of `checkpoint` on `backend`, with a started batcher; refuses models that cannot do the mode:
    completions need a forward next-token model, `fill_mask` a bidirectional (MLM) one."""
    session = Session.open(backend, checkpoint, step)
    config = session.checkpoint.config
    check_mode(session, checkpoint, fill_mask)
    limit = max_tokens_limit or config.block_size
    if limit < 1:
        raise ValueError(f"max_tokens_limit={limit} is invalid: use a positive integer")
    name = Path(checkpoint).resolve().name
    return Served(session, Batcher(session.model, slots, decode=not fill_mask).start(), name, limit, fill_mask)


def check_mode(session: Session, checkpoint: str, fill_mask: bool) -> None:
    """One line for a checkpoint that the chosen mode cannot serve, naming the mode that can."""
    config = session.checkpoint.config
    if fill_mask:
        if config.causal:
            raise ValueError(f"--fill-mask serves bidirectional models (trained with --objective mlm); {checkpoint} "
                             "predicts the next token: serve it without --fill-mask")
        if session.tokenizer.mask_id is None:
            raise ValueError(f"{checkpoint}'s tokenizer has no [MASK] token, so nothing can be filled in")
        return
    if not config.causal:
        raise ValueError(f"{checkpoint} is bidirectional (causal=False, --objective mlm) and cannot complete text: "
                         f"serve it as a fill-in page with serve --fill-mask --checkpoint {checkpoint}")
    check_servable(config)
    if session.checkpoint.meta.direction == BACKWARD:
        raise ValueError(f"{checkpoint} is a backward model (trained with --reverse): it cannot continue text; "
                         "serve a forward model")


def serve(backend: Backend, checkpoint: str, step: str = "best", host: str = "127.0.0.1", port: int = 8000,
          slots: int = 8, max_tokens_limit: int | None = None, fill_mask: bool = False) -> int:
    served = load(backend, checkpoint, step, slots, max_tokens_limit, fill_mask)
    what = f"fill-in page; fill API at http://{host}:{port}/v1/fill" if fill_mask else \
        f"OpenAI API at http://{host}:{port}/v1, {slots} slots"
    print(f"serving {served.name} on http://{host}:{port}/ ({what}); Ctrl-C stops", flush=True)
    try:
        uvicorn.run(create_app(served), host=host, port=port, log_level="warning")
    finally:
        served.batcher.close()
    return 0


def start_background(served: Served, host: str = "127.0.0.1", port: int = 0) -> tuple[uvicorn.Server, str]:
    """Run the app in a daemon thread; returns the server (set `should_exit` to stop it) and its base URL."""
    config = uvicorn.Config(create_app(served), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.05)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, f"http://{host}:{bound}"
