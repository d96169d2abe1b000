"""Load benchmark of `serve`: 1, 2, 4, 8, 16 concurrent streaming clients on loopback.

    python -m benchmarks.serve [--backend torch] [--checkpoint runs/X] [--max-tokens 128] [--seconds 60]

The server runs as its own process (`train_next_word_prediction.py serve`), as a user starts it;
clients are threads here, each sending streaming completions one after another for a bounded count
and time. Without --checkpoint, a random-weight model of the reference configuration (vocab 8192,
block 256, 4 layers, 4 heads, 256 dims) with a BPE tokenizer trained on a slice of the standard
library is written to a temporary folder: speed does not depend on what the weights say.

Measured per level: total new tokens/s (all clients' tokens over the level's wall time), time to
first token and the gap between tokens (percentiles over every request), errors, whether each
client's text equals what the same prompt and seed gave alone (each client i asks once alone first,
which also warms the server up), and the server's resident memory and its peak (VmHWM).
Results: benchmarks/results/serve-<backend>.json and .md (serve-<backend>-threads<N> with --threads N).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, git_commit, load_average, machine

LEVELS = (1, 2, 4, 8, 16)
RESULTS = ROOT / "benchmarks" / "results"


def reference_checkpoint(folder: Path) -> Path:
    from core.data.corpus import load_corpus
    from core.data.tokenizer import train_tokenizer
    from core.model.config import GPTConfig
    from core.model.params import init_params
    from core.train.checkpoint import Checkpoint, save_checkpoint
    from core.train.meta import CheckpointMeta

    tokenizer = train_tokenizer("bpe", load_corpus(None, max_bytes=8_000_000).documents, 8192)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=256, n_layer=4, n_head=4, n_embd=256)
    meta = CheckpointMeta(step=0, source="random weights for the serving benchmark")
    return save_checkpoint(folder / "reference", Checkpoint(config, init_params(config, 0), meta, tokenizer.to_json()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream(port: int, body: dict) -> dict:
    """One streaming completion: its text, the arrival time of each token, and an error if any."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times, text = [], []
    try:
        conn.request("POST", "/v1/completions", json.dumps({**body, "stream": True}),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            return {"error": f"HTTP {response.status}: {response.read()[:200]!r}", "times": [], "start": start}
        for line in response:
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return {"error": chunk["error"]["message"], "times": times, "start": start}
            c = chunk["choices"][0]
            text.append(c["text"])
            if c["finish_reason"] is None:  # one chunk per token; the last one carries only the finish
                times.append(time.perf_counter())
    except OSError as err:
        return {"error": f"{type(err).__name__}: {err}", "times": times, "start": start}
    finally:
        conn.close()
    return {"error": None, "text": "".join(text), "times": times, "start": start}


def level(port: int, clients: int, bodies: list[dict], per_client: int, seconds: float) -> list[dict]:
    """`clients` threads, client i sending bodies[i] up to `per_client` times within `seconds`."""
    results: list[list[dict]] = [[] for _ in range(clients)]
    deadline = time.perf_counter() + seconds

    def client(i: int) -> None:
        for _ in range(per_client):
            if time.perf_counter() > deadline:
                break
            results[i].append({**stream(port, bodies[i]), "client": i})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for rs in results for r in rs]


def server_memory(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields.get("VmRSS"), "peak_rss_mb": fields.get("VmHWM")}


def summarize(runs: list[dict], alone: list[str], clients: int) -> dict:
    ok = [r for r in runs if r["error"] is None]
    tokens = sum(len(r["times"]) for r in runs)
    wall = max(r["times"][-1] for r in ok if r["times"]) - min(r["start"] for r in runs) if ok else float("nan")
    ttft = [1000 * (r["times"][0] - r["start"]) for r in ok if r["times"]]
    gaps = [1000 * g for r in ok for g in np.diff(r["times"])]
    pct = lambda xs, q: round(float(np.percentile(xs, q)), 2) if xs else None  # noqa: E731
    return {
        "clients": clients, "requests": len(runs), "errors": len(runs) - len(ok), "new_tokens": tokens,
        "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 1),
        "ttft_ms": {"p50": pct(ttft, 50), "p90": pct(ttft, 90), "max": pct(ttft, 100)},
        "token_gap_ms": {"p50": pct(gaps, 50), "p90": pct(gaps, 90), "p99": pct(gaps, 99)},
        "identical_to_alone": sum(r.get("text") == alone[r["client"]] for r in ok), "compared": len(ok),
    }


class Lockstep:
    """The model's own lockstep `generate` at batch 1 and 8, timed here between rounds while the server
    idles: what batching can give on this machine at this moment, to judge the serving ratio against."""

    def __init__(self, backend: str, checkpoint: Path, threads: int | None):
        from backends import get_backend
        from core.train.checkpoint import load_checkpoint

        if backend == "torch":  # as many threads as the server's model has (see core.serve.server.leave_a_core)
            import torch

            torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) - 1))
        ck = load_checkpoint(checkpoint, "last")
        self.model, self.rates = get_backend(backend).build(ck.config, ck.params), {1: [], 8: []}

    def measure(self, new_tokens: int = 64) -> None:
        from core.generate.generation import generate

        for batch in (1, 8):
            prompts = np.ones((batch, 32), dtype=np.int64)
            generate(self.model, prompts, 4)  # warm
            start = time.perf_counter()
            generate(self.model, prompts, new_tokens)
            self.rates[batch].append(batch * new_tokens / (time.perf_counter() - start))

    def as_dict(self) -> dict:
        med = {b: float(np.median(r)) for b, r in self.rates.items()}
        return {"batch1_tokens_per_s": round(med[1], 1), "batch8_tokens_per_s": round(med[8], 1),
                "batch8_over_batch1": round(med[8] / med[1], 2)}


def median_round(rounds: list[dict]) -> dict:
    """The round with the median tokens/s, with errors, texts and memory counted over every round."""
    chosen = sorted(rounds, key=lambda r: r["tokens_per_s"])[len(rounds) // 2]
    return {**chosen, "errors": sum(r["errors"] for r in rounds), "requests": sum(r["requests"] for r in rounds),
            "identical_to_alone": sum(r["identical_to_alone"] for r in rounds),
            "compared": sum(r["compared"] for r in rounds), "tokens_per_s_rounds": [r["tokens_per_s"] for r in rounds],
            "memory": rounds[-1]["memory"]}


def markdown(result: dict) -> str:
    m, rows = result["machine"], result["levels"]
    one = rows[0]["tokens_per_s"]
    lines = [
        f"# Serving under load: {result['backend']} on {result['device']}", "",
        f"`{result['command']}` on {m.get('cpu', '?')} ({m.get('cpus', '?')} CPUs), {result['date']}, "
        f"commit {result['commit']}. Model: {result['model']}. Each request: a {result['prompt_tokens']}-token "
        f"prompt, {result['max_tokens']} new tokens at temperature {result['temperature']}, top_k "
        f"{result['top_k']}, streamed; {result['slots']} slots; up to {result['per_client']} requests per client "
        f"within {result['seconds']} s; {result['rounds']} rounds of all levels in turn, the median round shown "
        f"(errors and texts counted over all); server threads: {result['server_threads']}. "
        f"Load average {result['load_start']:.2f} at the start, "
        f"{result['load_end']:.2f} at the end.", "",
        "| clients | requests | errors | new tokens/s | x one client | first token p50 / p90 ms | "
        "token gap p50 / p90 / p99 ms | text = alone | server RSS / peak MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        t, g, mem = r["ttft_ms"], r["token_gap_ms"], r["memory"]
        lines.append(
            f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['tokens_per_s']:,.1f} | "
            f"{r['tokens_per_s'] / one:.2f}x | {t['p50']} / {t['p90']} | {g['p50']} / {g['p90']} / {g['p99']} | "
            f"{r['identical_to_alone']}/{r['compared']} | {mem['rss_mb']} / {mem['peak_rss_mb']} |")
    ls = result["lockstep"]
    lines += ["", f"Lockstep `generate` in the same run (this process, between rounds, server idle): batch 1 "
              f"{ls['batch1_tokens_per_s']:,.1f} new tokens/s, batch 8 {ls['batch8_tokens_per_s']:,.1f}: "
              f"**{ls['batch8_over_batch1']:.2f}x**, what batching 8 rows can give here at this moment."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="torch", choices=["torch", "tinygrad"])
    parser.add_argument("--checkpoint", default=None, help="a run or checkpoint folder (default: random reference)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--per-client", type=int, default=2, help="requests each client sends, one after another")
    parser.add_argument("--seconds", type=float, default=60, help="no new request after this long in a level")
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--rounds", type=int, default=3, help="times every level runs, in turn")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS of the server (default: serve's own, cores - 1)")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    tmp = tempfile.TemporaryDirectory()
    checkpoint = Path(args.checkpoint) if args.checkpoint else reference_checkpoint(Path(tmp.name))
    from core.data.tokenizer import tokenizer_from_json
    from core.train.checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint, "last")
    tokenizer = tokenizer_from_json(ck.tokenizer_json)
    source = Path(os.__file__).read_text()
    prompt_tokens = 32
    ids = tokenizer.encode(source)
    bodies = [{"prompt": tokenizer.decode(ids[2000 + 97 * i : 2000 + 97 * i + prompt_tokens]), "seed": i,
               "max_tokens": args.max_tokens, "temperature": 0.8, "top_k": 40} for i in range(max(levels))]
    port = free_port()
    command = [sys.executable, str(ROOT / "train_next_word_prediction.py"), "serve", "--backend", args.backend,
               "--checkpoint", str(checkpoint), "--port", str(port), "--slots", str(args.slots)]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    try:
        device_line = server.stdout.readline().strip()  # "using torch on cpu"
        server.stdout.readline()  # "serving ... on http://..."
        for _ in range(600):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/health")
                break
            except OSError:
                time.sleep(0.1)
        load_start = load_average()
        print(f"alone: {max(levels)} requests, one at a time (reference texts, warm-up)", flush=True)
        alone = [stream(port, body).get("text") for body in bodies]
        # Levels take turns, round after round (1 2 4 8 16 1 2 4 ...): the machine's load drifts, and
        # each level reports its median round, so the ratios compare levels measured side by side.
        by_level: dict[int, list[dict]] = {c: [] for c in levels}
        lockstep = Lockstep(args.backend, checkpoint, args.threads)
        for r in range(args.rounds):
            lockstep.measure()
            for clients in levels:
                row = {**summarize(level(port, clients, bodies, args.per_client, args.seconds), alone, clients),
                       "memory": server_memory(server.pid), "round": r}
                print(json.dumps(row), flush=True)
                by_level[clients].append(row)
        rows = [median_round(by_level[c]) for c in levels]
    finally:
        server.terminate()
        server.wait(30)
    c = ck.config
    result = {
        "command": "python -m benchmarks.serve" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "backend": args.backend, "device": device_line.removeprefix(f"using {args.backend} on "),
        "model": f"vocab {c.vocab_size}, block {c.block_size}, {c.n_layer} layers, {c.n_head} heads, {c.n_embd} dims"
                 + (", random weights" if not args.checkpoint else f", {checkpoint}"),
        "prompt_tokens": prompt_tokens, "max_tokens": args.max_tokens, "temperature": 0.8, "top_k": 40,
        "slots": args.slots, "per_client": args.per_client, "seconds": args.seconds, "rounds": args.rounds,
        "server_threads": args.threads or (f"serve's default, OMP_NUM_THREADS={max(1, (os.cpu_count() or 1) - 1)} "
                                           "(cores - 1)" if args.backend == "torch" else "tinygrad's own"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": git_commit(), "machine": machine(),
        "load_start": load_start, "load_end": load_average(), "levels": rows, "lockstep": lockstep.as_dict(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / (f"serve-{args.backend}" + (f"-threads{args.threads}" if args.threads else ""))
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
