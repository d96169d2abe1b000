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


def token_rows(n_tokens: int, per_row: int = 80, max_rows: int = 12) -> list[range]:
    """The token positions drawn in each row of the token plot: every token, `per_row` a row, up to
    `max_rows` rows (a longer text is cut there, and the figure's title says so)."""
    return [range(i, min(i + per_row, n_tokens)) for i in range(0, min(n_tokens, per_row * max_rows), per_row)]


def plot_token_probabilities(
    tokens: list[str],
    probs: np.ndarray,
    png_path: str | Path,
    per_row: int = 80,
    title: str = "Probability of each token",
    max_rows: int = 12,
) -> Path:
    """A bar per token of a text, log scale, coloured as the terminal view; `per_row` tokens a row, so
    every token is drawn (up to `max_rows` rows; the title says when the text was longer)."""
    from core.evaluate.analysis import BANDS, band

    colours = ["#2ca02c", "#98df8a", "#ffbb33", "#d62728", "#9467bd"]
    assert len(colours) == len(BANDS)
    p_all = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    rows = token_rows(len(tokens), per_row, max_rows)
    shown = rows[-1].stop if rows else 0
    width = max(7, 0.22 * max(len(r) for r in rows) + 1.5) if rows else 7
    fig, axes = plt.subplots(len(rows) or 1, 1, figsize=(width, 0.6 + 3.0 * max(1, len(rows))), dpi=120, squeeze=False)
    for ax, positions in zip(axes[:, 0], rows):
        p = p_all[positions.start : positions.stop]
        ax.bar(positions, p, color=[colours[band(float(v))] for v in p])
        ax.set_yscale("log")
        ax.set_ylim(min(1e-4, p_all[:shown].min() / 2), 1.5)  # one scale for every row
        ax.set_xlim(positions.start - 0.6, positions.start + per_row - 0.4)  # rows aligned, the last one too
        labels = [_label(tokens[i]) for i in positions]
        ax.set_xticks(positions, labels, rotation=90, fontsize=7, family="monospace")
        ax.set_ylabel(f"P, tokens {positions.start}-{positions.stop - 1}", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    labels = ("p >= 50%", "10-50%", "1-10%", "0.1-1%", "< 0.1%")
    handles = [matplotlib.patches.Patch(color=c, label=label) for c, label in zip(colours, labels)]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    cut = f" (the first {shown} of {len(tokens)} tokens)" if shown < len(tokens) else f" ({len(tokens)} tokens)"
    axes[0, 0].set_title(title + cut)
    fig.tight_layout(rect=(0, 0.04, 1, 1))  # room for the legend under the last row
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)


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
    ax.set_xlim(low, 0.05)  # limits first: label placement measures where the text lands
    ax.set_ylim(low, 0.05)
    fig.tight_layout()  # the final layout before placing: labels are measured where they will be drawn
    place_labels(ax, [(f[i], b[i]) for i in labelled], [_label(rows[i]["word"], 14) for i in labelled])
    ax.set_xlabel("log10 P(word | left context) per token  [forward model]")
    ax.set_ylabel("log10 P(word | right context) per token  [backward model]")
    ax.set_title(f"Each word from both sides ({len(rows)} words)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, png_path)


# Where a label may sit around its point, in points: right, above, left, below and the diagonals.
LABEL_OFFSETS = ((4, 3), (4, -9), (-4, 3), (-4, -9), (0, 7), (0, -13), (8, 10), (-8, -16))


def place_labels(ax, points: list[tuple[float, float]], labels: list[str], fontsize: int = 7) -> list:
    """Label points in order of priority, each at the first offset where it overlaps no label placed
    before it; a label with no free place is left out (a dense cluster keeps its first labels legible).
    Returns the annotations drawn."""
    renderer = ax.figure.canvas.get_renderer()
    placed, taken = [], []
    for (x, y), text in zip(points, labels):
        for dx, dy in LABEL_OFFSETS:
            ha = "right" if dx < 0 else "left" if dx > 0 else "center"
            note = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, ha=ha)
            note.set_in_layout(False)  # a later tight_layout must not move the axes under placed labels
            box = note.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(other) for other in taken):
                placed.append(note)
                taken.append(box)
                break
            note.remove()
    return placed
