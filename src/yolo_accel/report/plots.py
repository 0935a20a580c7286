"""Small matplotlib helpers that return PNG bytes (Agg backend, no display needed)."""

from __future__ import annotations

import io


def figure(width: float = 6.4, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    return fig, ax


def to_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def grouped_bars(
    labels: list[str],
    series: dict[str, list[float]],
    title: str,
    ylabel: str,
    errors: dict[str, list[float]] | None = None,
) -> bytes:
    """Bars for each label, one colour per series (e.g. mAP50 and mAP50-95 per backend)."""
    import numpy as np

    fig, ax = figure()
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        err = errors.get(name) if errors else None
        bars = ax.bar(x + i * width - 0.4 + width / 2, values, width, label=name, yerr=err, capsize=3)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
    ax.set_xticks(x, labels, rotation=15)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return to_png(fig)


def curves(series: dict[str, tuple[list[float], list[float]]], title: str, xlabel: str, ylabel: str) -> bytes:
    fig, ax = figure(5.2, 4.0)
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return to_png(fig)


def histograms(series: dict[str, tuple[list[float], list[int]]], title: str, xlabel: str) -> bytes:
    fig, ax = figure()
    for name, (bins, counts) in series.items():
        ax.stairs(counts, bins, label=name, fill=False, linewidth=1.5)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("boxes")
    ax.legend(fontsize=8)
    return to_png(fig)
