"""A benchmark result (the JSON `run.py` writes) as ratios, a markdown report and a bar chart."""

from __future__ import annotations

from pathlib import Path

NOT_MEASURED = "not measured in this run"  # a target whose peer this run did not time is not judged


def _find(rows: list[dict], **match) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def ratios(result: dict) -> dict:
    """Speed ratios between variants timed side by side in this run."""
    out: dict[str, float | None] = {}
    attention = result.get("attention", [])
    for r in attention:
        if r["framework"] != "tinygrad" or r["path"] == "fused":
            continue
        shape = {k: r[k] for k in ("B", "H", "T", "D", "direction")}
        label = f"attention {r['direction']} B{r['B']} H{r['H']} T{r['T']} D{r['D']}: tinygrad {r['path']} /"
        against = [("tinygrad", "fused")] + ([("torch", "torch fused")] if r["path"] == "ours" else [])
        for framework, name in against:
            other = _find(attention, **shape, framework=framework, path="fused")
            out[f"{label} {name}"] = _ratio(r["calls_per_s"], other and other["calls_per_s"])
    decode = result.get("decode", {}).get("results", [])
    for batch in sorted({r["batch"] for r in decode}):
        hf = _find(decode, backend="hf", batch=batch)
        for backend in ("torch", "tinygrad"):
            mine = _find(decode, backend=backend, batch=batch, cache=True)
            plain = _find(decode, backend=backend, batch=batch, cache=False)
            if mine and hf:
                out[f"decode batch {batch}: {backend} / hf generate"] = _ratio(mine["tokens_per_s"], hf["tokens_per_s"])
            if mine and plain:
                out[f"decode batch {batch}: {backend} cache / no cache"] = _ratio(
                    mine["tokens_per_s"], plain["tokens_per_s"]
                )
        tg, pt = (
            _find(decode, backend="tinygrad", batch=batch, cache=True),
            _find(decode, backend="torch", batch=batch, cache=True),
        )
        if tg and pt:
            out[f"decode batch {batch}: tinygrad / torch"] = _ratio(tg["tokens_per_s"], pt["tokens_per_s"])
    training = result.get("training", [])
    hf, pt, tg = (_find(training, backend=b) for b in ("hf", "torch", "tinygrad"))
    if pt and hf:
        out["training: torch / hf"] = _ratio(pt["tokens_per_s"], hf["tokens_per_s"])
    if tg and hf:
        out["training: tinygrad / hf"] = _ratio(tg["tokens_per_s"], hf["tokens_per_s"])
    if tg and pt:
        out["training: tinygrad / torch"] = _ratio(tg["tokens_per_s"], pt["tokens_per_s"])
    return out


def targets(result: dict) -> list[dict]:
    """The issue's speed targets, each judged only against figures this run measured; a target whose
    peer it did not time is listed as not measured (`--tinygrad-examples` times tinygrad's examples)."""
    found = ratios(result)
    checks = []

    def check(name: str, value: float | None, goal: float) -> None:
        met = None if value is None else value >= goal
        checks.append({"target": name, "measured": value, "goal": goal, "met": met,
                       "basis": "same run" if value is not None else NOT_MEASURED})  # fmt: skip

    cfg = result["config"]
    ref = f"B8 H{cfg['n_head']} T{cfg['block_size']} D{cfg['n_embd'] // cfg['n_head']}"
    attention = found.get(f"attention forward {ref}: tinygrad ours / fused")
    check("tinygrad attention / its built-in SDPA (forward)", attention, 5)
    check("torch training / Hugging Face", found.get("training: torch / hf"), 1)
    check("torch decode batch 1 / Hugging Face generate", found.get("decode batch 1: torch / hf generate"), 5)
    check("torch decode batch 8 / Hugging Face generate", found.get("decode batch 8: torch / hf generate"), 3)
    examples = result.get("tinygrad_examples") or {}  # measured in this run, taking turns with our tinygrad model
    check("tinygrad training / examples/llm.c/train_gpt2.py",
          _ratio(examples.get("ours_train_tokens_per_s"), examples.get("train_tokens_per_s")), 3)  # fmt: skip
    for batch in (1, 8):
        ours, theirs = examples.get(f"ours_decode_{batch}_tokens_per_s"), examples.get(f"decode_{batch}_tokens_per_s")
        check(f"tinygrad decode batch {batch} / examples/gpt2.py", _ratio(ours, theirs), 3)
    return checks


# ---- markdown


def _fmt(x, digits: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def _memory(row: dict) -> str:
    for key, label in (("peak_allocated_mb", "alloc"), ("allocated_mb", "alloc")):
        if key in row:
            return f"{row[key]:,.0f} ({label})"
    if "peak_rss_mb" in row:
        return f"+{row['rise_mb']:,.0f}" if row.get("per_block") else f"{row['peak_rss_mb']:,.0f} (process)"
    return "–"


def markdown(result: dict) -> str:
    cfg, run = result["config"], result["run"]
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    load = run["load_average"]
    lines = [
        f"# Benchmarks: {run['mode']} run, configuration `{cfg['name']}`",
        "",
        f"`{run['command']}` on {result['machine']['cpu']} ({result['machine']['cpus']} CPUs), "
        f"{run['date']}, {run['duration_s']:.0f} s. Devices: "
        + ", ".join(f"{k} {v}" for k, v in run["devices"].items())
        + f". Threads: {run['threads']}. {versions}. Commit {result['machine']['commit']}.",
        "",
        f"Model: vocab {cfg['vocab_size']}, block {cfg['block_size']}, {cfg['n_layer']} layers, {cfg['n_head']} heads, "
        f"{cfg['n_embd']} dims, batch {cfg['batch_size']}, float32. Load average (1 min) during the run: "
        f"{load['start']} at the start, {load['end']} at the end, {load['max']} at most, on "
        f"{result['machine']['cpus']} CPUs: absolute figures carry that load, ratios compare variants timed in turn.",
        "",
    ]
    if result.get("matmul_gflops"):
        peaks = ", ".join(f"{k} {v:,.1f}" for k, v in result["matmul_gflops"].items())
        lines += [f"Matmul peak (float32, {result['matmul_n']}³, GFLOP/s): {peaks}.", ""]
    if result.get("training"):
        lines += [
            "## Training",
            "",
            "| backend | ms/step | tokens/s | MFU | GFLOP/s | first step s | memory MB¹ |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in result["training"]:
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "–"
            lines.append(
                f"| {r['backend']} | {_fmt(r['ms_per_step'])} | {_fmt(r['tokens_per_s'], 0)} | {mfu} | "
                f"{_fmt(r['achieved_gflops'])} | {_fmt(r['first_call_s'])} | {_memory(r)} |"
            )
        lines.append("")
    decode = result.get("decode")
    if decode and decode["results"]:
        lines += [
            "## Generation (greedy)",
            "",
            f"Prompt {decode['prompt_len']} tokens, {decode['new_tokens']} new tokens per row.",
            "",
            "| backend | batch | KV cache | new tokens/s | ms/token | first token ms | warm-up s | memory MB¹ |",
            "| --- | ---: | :---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in decode["results"]:
            lines.append(
                f"| {r['backend']} | {r['batch']} | {'yes' if r['cache'] else 'no'} | "
                f"{_fmt(r['tokens_per_s'])} | {_fmt(r['ms_per_token'], 2)} | {_fmt(r['first_token_ms'])} | "
                f"{_fmt(r['warmup_s'])} | {_memory(r)} |"
            )
        if decode["positions"]:
            spans = [s["positions"] for s in decode["positions"][0]["spans"]]
            lines += [
                "",
                "Milliseconds per cached decode step, by position:",
                "",
                "| backend | batch | " + " | ".join(spans) + " | last / first |",
                "| --- | ---: |" + " ---: |" * (len(spans) + 1),
            ]
            for p in decode["positions"]:
                lines.append(
                    f"| {p['backend']} | {p['batch']} | "
                    + " | ".join(_fmt(s["ms"], 2) for s in p["spans"])
                    + f" | {p['last_over_first']} |"
                )
        if decode.get("floor"):
            f = decode["floor"]
            hf = _find(decode["results"], backend="hf", batch=1)
            versus = (
                f", {f['most_tokens_per_s_batch_1'] / hf['tokens_per_s']:.1f}x Hugging Face's batch-1 rate here"
                if hf
                else ""
            )
            lines += [
                "",
                f"Floor: a cached step reads all {f['weight_mb']:,.1f} MB of weights; at the {f['read_gb_per_s']} GB/s "
                f"this machine read memory at in this run, a step takes at least {f['least_ms_per_step']} ms, "
                f"so batch 1 can reach at most {f['most_tokens_per_s_batch_1']:,.0f} new tokens/s{versus}.",
            ]
        if decode.get("agreement"):
            same = ", ".join(f"{a['backend']} batch {a['batch']}: {a['rows_equal_to_hf']}" for a in decode["agreement"])
            lines += ["", f"Greedy rows identical to Hugging Face's (same weights): {same}."]
        lines.append("")
    if result.get("attention"):
        lines += [
            "## Attention (causal, alone)",
            "",
            "| B | H | T | D | direction | framework | path | calls/s | tokens/s | compile s |",
            "| ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: |",
        ]
        for r in result["attention"]:
            lines.append(
                f"| {r['B']} | {r['H']} | {r['T']} | {r['D']} | {r['direction']} | {r['framework']} | "
                f"{r['path']} | {_fmt(r['calls_per_s'], 2)} | {_fmt(r['tokens_per_s'], 0)} | "
                f"{_fmt(r['warmup_s'])} |"
            )
        lines.append("")
    if result.get("tinygrad_examples"):
        ex = result["tinygrad_examples"]
        lines += [
            "## tinygrad's own examples, same configuration and run",
            "",
            ", ".join(f"{k}: {v}" for k, v in ex.items()),
            "",
        ]
    if result.get("training") or result.get("decode"):
        lines += [
            "¹ Memory the warm-up calls took: on CPU the rise of the process's peak resident set (+MB; later calls "
            "reuse it), on CUDA torch's peak allocation, elsewhere tinygrad's allocated bytes.",
            "",
        ]
    if result.get("ratios"):
        lines += ["## Ratios (variants timed side by side in this run)", "", "| ratio | value |", "| --- | ---: |"]
        lines += [f"| {k} | {_fmt(v, 2)} |" for k, v in result["ratios"].items()]
        lines.append("")
    if result.get("targets"):
        lines += ["## Targets", "", "| target | measured | goal | met | basis |", "| --- | ---: | ---: | :---: | --- |"]
        for t in result["targets"]:
            measured = "–" if t["measured"] is None else f"{t['measured']:.2f}x"
            met = {True: "yes", False: "no", None: "–"}[t["met"]]
            lines.append(f"| {t['target']} | {measured} | {t['goal']}x | {met} | {t['basis']} |")
        lines.append("")
    return "\n".join(lines)


# ---- chart


def chart(result: dict, path: Path) -> Path:
    """Three panels of horizontal bars (log scale): attention, generation, training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    attention = [
        r
        for r in result.get("attention", [])
        if r["B"] == 8
        and r["T"] == result["config"]["block_size"]
        and r["H"] == result["config"]["n_head"]
        and r["D"] == result["config"]["n_embd"] // result["config"]["n_head"]
    ]
    if attention:
        short = {"forward": "fwd", "forward+backward": "fwd+bwd"}
        panels.append(
            (
                "Attention B8, calls/s",
                [(f"{r['framework']} {r['path']}, {short[r['direction']]}", r["calls_per_s"]) for r in attention],
            )
        )
    decode = result.get("decode", {}).get("results", [])
    if decode:
        panels.append(
            (
                "Greedy generation, new tokens/s",
                [
                    (f"{r['backend']} b{r['batch']}{'' if r['cache'] else ' no cache'}", r["tokens_per_s"])
                    for r in decode
                ],
            )
        )
    training = result.get("training", [])
    if training:
        panels.append(("Training, tokens/s", [(r["backend"], r["tokens_per_s"]) for r in training]))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.2 * max(1, len(panels)), 4.8), squeeze=False)
    colors = {"torch": "#ee4c2c", "tinygrad": "#4c72b0", "hf": "#f2a900"}
    for ax, (title, bars) in zip(axes[0], panels):
        labels, values = [b[0] for b in bars][::-1], [b[1] for b in bars][::-1]
        ax.barh(labels, values, color=[colors.get(label.split()[0], "#888888") for label in labels])
        ax.set_xscale("log")
        ax.set_title(title, fontsize=11)
        ax.tick_params(axis="y", labelsize=8)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.1f}", va="center", fontsize=7)
        ax.set_xlim(right=max(values) * 8)
    cfg = result["config"]
    fig.suptitle(
        f"{cfg['name']} ({cfg['n_layer']} layers, {cfg['n_embd']} dims, block {cfg['block_size']}); "
        f"{result['machine']['cpus']} CPUs, load {result['run']['load_average']['max']} at most "
        "(hf = Hugging Face GPT-2)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
