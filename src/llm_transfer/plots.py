"""Small matplotlib figures shared by the notebooks (each returns its Figure)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

FIGSIZE = (6.4, 3.6)


def plot_length_hist(lengths: dict[str, Sequence[int]], bins: int = 40, title: str = "WordPiece tokens per sentence"):
    """Overlaid, density-normalised histograms of token counts, one per named split."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    hi = max(max(v) for v in lengths.values())
    edges = np.linspace(0, hi + 1, bins + 1)
    for name, v in lengths.items():
        v = np.asarray(v)
        ax.hist(v, bins=edges, density=True, alpha=0.5,
                label=f"{name} (n={len(v):,}, mean {v.mean():.1f}, p95 {np.percentile(v, 95):.0f})")
    ax.set_xlabel("tokens (incl. [CLS], [SEP])")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_history(history: Sequence[dict], baseline: float | None = None, title: str = "Fine-tuning on SST-2"):
    """Train loss and dev accuracy per epoch (with an optional baseline line, e.g. the majority class)."""
    epochs = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(FIGSIZE[0] * 1.5, FIGSIZE[1]))
    a1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    a1.plot(epochs, [h["eval_loss"] for h in history], "s--", label="dev loss")
    a1.set_xlabel("epoch")
    a1.set_ylabel("cross-entropy")
    a1.legend()
    a2.plot(epochs, [h["eval_accuracy"] for h in history], "o-", color="C2", label="dev accuracy")
    if baseline is not None:
        a2.axhline(baseline, color="grey", ls=":", label=f"majority class ({baseline:.3f})")
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy")
    a2.legend()
    for a in (a1, a2):
        a.set_xticks(epochs)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
