"""Pictures of evaluations and analyses (matplotlib, Agg backend: files only, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.patches
import matplotlib.ticker

matplotlib.use("Agg")  # files only: no window, works on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _label(token: str, width: int = 10) -> str:
    """A token as an axis label: whitespace made visible, long tokens shortened."""
    text = token.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "·")
    return text if len(text) <= width else text[: width - 1] + "…"


def _save(fig, png_path: str | Path) -> Path:
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)


def plot_perplexity_histogram(
    perplexities: np.ndarray, dataset_perplexity: float, png_path: str | Path, unit: str = "sequence"
) -> Path:
    """Histogram of per-sequence perplexities on log-spaced bins, the data-set perplexity marked."""
    ppl = np.asarray(perplexities, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    low, high = max(ppl.min(), 1.0), max(ppl.max(), 1.0 + 1e-9)
    bins = np.geomspace(low, high * 1.0001, 30) if high > low * 1.01 else 10
    ax.hist(ppl, bins=bins, color="tab:blue", alpha=0.8, edgecolor="white")
    if isinstance(bins, np.ndarray):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axvline(dataset_perplexity, color="tab:red", ls="--", label=f"data set: {dataset_perplexity:.1f}")
    ax.axvline(float(np.median(ppl)), color="grey", ls=":", label=f"median {unit}: {np.median(ppl):.1f}")
    ax.set_xlabel(f"perplexity per {unit} (log scale)")
    ax.set_ylabel(f"{unit}s")
    ax.set_title(f"Perplexity of {len(ppl):,} {unit}s")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, png_path)


def plot_token_probability_distribution(probs: np.ndarray, png_path: str | Path) -> Path:
    """How probable the actual next tokens were: a histogram of log10 p, and the share of tokens
    with at least a given probability."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    left.hist(np.log10(p), bins=60, color="tab:green", alpha=0.8, edgecolor="white")
    left.set_xlabel("log10 P(actual next token)")
    left.set_ylabel("tokens")
    left.set_title(f"Probability of each of {len(p):,} tokens")
    left.grid(alpha=0.3)
    grid = np.geomspace(1e-6, 1.0, 200)
    share = 1.0 - np.searchsorted(np.sort(p), grid, side="left") / len(p)  # share with P >= q
    right.plot(grid, share, color="tab:green")
    right.set_xscale("log")
    right.set_xlabel("probability threshold q")
    right.set_ylabel("share of tokens with P >= q")
    for q in (0.5, 0.1, 0.01):
        right.axvline(q, color="grey", ls=":", lw=1)
        right.annotate(f"{(p >= q).mean():.0%}", (q, (p >= q).mean()), textcoords="offset points", xytext=(4, 4))
    right.set_title("Tokens at least this probable")
    right.grid(alpha=0.3)
    return _save(fig, png_path)


def plot_token_probabilities(
    tokens: list[str],
    probs: np.ndarray,
    png_path: str | Path,
    limit: int = 80,
    title: str = "Probability of each token",
) -> Path:
    """A bar per token of a text (the first `limit`), log scale, coloured as the terminal view."""
    from core.evaluate.analysis import BANDS, band

    colours = ["#2ca02c", "#98df8a", "#ffbb33", "#d62728", "#9467bd"]
    assert len(colours) == len(BANDS)
    tokens, p = tokens[:limit], np.clip(np.asarray(probs, dtype=np.float64)[:limit], 1e-12, 1.0)
    fig, ax = plt.subplots(figsize=(max(7, 0.22 * len(tokens) + 1.5), 4.2), dpi=120)
    ax.bar(range(len(p)), p, color=[colours[band(float(v))] for v in p])
    ax.set_yscale("log")
    ax.set_ylim(min(1e-4, p.min() / 2), 1.5)
    ax.set_xticks(range(len(tokens)), [_label(t) for t in tokens], rotation=90, fontsize=7, family="monospace")
    ax.set_ylabel("P(token | context)")
    labels = ("p >= 50%", "10-50%", "1-10%", "0.1-1%", "< 0.1%")
    handles = [matplotlib.patches.Patch(color=c, label=label) for c, label in zip(colours, labels)]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=5, fontsize=8, frameon=False)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, png_path)


def plot_attention_grid(
    maps: list[np.ndarray], tokens: list[str], png_path: str | Path, title: str = "", causal: bool = True
) -> Path:
    """A heatmap per layer (rows) and head (columns): row = query token, column = key token; the
    positions a causal model may not look at are left blank."""
    n_layer, n_head, T = len(maps), maps[0].shape[0], maps[0].shape[-1]
    size = max(2.2, min(4.5, 0.16 * T + 0.8))
    fig, axes = plt.subplots(
        n_layer, n_head, figsize=(size * n_head + 0.5, size * n_layer + 0.8), dpi=110, squeeze=False
    )
    labels = [_label(t, 8) for t in tokens]
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#eeeeee")
    show_labels = T <= 40
    for layer, heads in enumerate(maps):
        for head in range(n_head):
            ax = axes[layer][head]
            future = np.triu(np.ones((T, T), dtype=bool), k=1) & causal  # masked by causality: drawn blank
            ax.imshow(np.ma.masked_where(future, heads[head]), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"layer {layer} head {head}", fontsize=9)
            if show_labels:
                ax.set_xticks(range(T), labels, rotation=90, fontsize=6, family="monospace")
                ax.set_yticks(range(T), labels, fontsize=6, family="monospace")
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle(title or "Attention weights (rows: query token, columns: key token)", fontsize=11)
    return _save(fig, png_path)


def plot_bidirectional(rows: list[dict], png_path: str | Path, annotate: int = 5) -> Path:
    """Forward against backward log-probability of each word, per token of the word (so that long
    words are comparable with short ones), coloured by the word's number of tokens. Labelled: the
    most surprising words (`core.evaluate.bidirectional.surprising`) and the most one-sided ones."""
    from core.evaluate.bidirectional import surprising

    n_tokens = np.array([r["tokens"] for r in rows])
    f = np.array([r["forward_logprob"] for r in rows]) / np.log(10) / n_tokens
    b = np.array([r["backward_logprob"] for r in rows]) / np.log(10) / n_tokens
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    points = ax.scatter(f, b, s=16, alpha=0.75, c=n_tokens, cmap="plasma", vmin=1, vmax=max(2, n_tokens.max()))
    fig.colorbar(points, ax=ax, label="tokens in the word", shrink=0.8)
    low = min(f.min(), b.min()) - 0.2
    ax.plot([low, 0.05], [low, 0.05], color="grey", ls="--", lw=1, label="same probability both ways")
    labelled = [r["index"] for r in surprising(rows, annotate)]
    labelled += [i for i in np.argsort(-np.abs(f - b)).tolist() if i not in labelled][:annotate]
    for i in labelled:
        ax.annotate(_label(rows[i]["word"], 14), (f[i], b[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("log10 P(word | left context) per token  [forward model]")
    ax.set_ylabel("log10 P(word | right context) per token  [backward model]")
    ax.set_title(f"Each word from both sides ({len(rows)} words)")
    ax.set_xlim(low, 0.05)
    ax.set_ylim(low, 0.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, png_path)
