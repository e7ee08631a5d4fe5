"""Small matplotlib figures shared by the notebooks (each returns its Figure)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

FIGSIZE = (6.4, 3.6)


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, title_size: float | None = None):
    """Axis labels, title and a small legend on one panel, then a tight layout; returns the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, **({} if title_size is None else {"fontsize": title_size}))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_length_hist(lengths: dict[str, Sequence[int]], bins: int = 40, title: str = "WordPiece tokens per sentence"):
    """Overlaid, density-normalised histograms of token counts, one per named split."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    hi = max(max(v) for v in lengths.values())
    edges = np.linspace(0, hi + 1, bins + 1)
    for name, v in lengths.items():
        v = np.asarray(v)
        ax.hist(v, bins=edges, density=True, alpha=0.5,
                label=f"{name} (n={len(v):,}, mean {v.mean():.1f}, p95 {np.percentile(v, 95):.0f})")
    return _finish(fig, ax, "tokens (incl. [CLS], [SEP])", "density", title)


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


def plot_accuracy_bars(accuracies: dict[str, float], title: str = "Dev accuracy"):
    """One labelled bar per method (e.g. majority class, probe on random weights, probe on pretrained)."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    names, values = list(accuracies), list(accuracies.values())
    bars = ax.bar(names, values, color=[f"C{i}" for i in range(len(names))])
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=2)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_embedding_pca(panels: dict[str, tuple[np.ndarray, Sequence[int]]],
                       label_names: Sequence[str] = ("negative", "positive"), title: str | None = None):
    """2-D PCA scatters of embeddings coloured by label, one panel per named (embeddings, labels)."""
    from sklearn.decomposition import PCA

    fig, axes = plt.subplots(1, len(panels), figsize=(FIGSIZE[0] * 1.5, FIGSIZE[1] * 1.1), squeeze=False)
    for ax, (name, (emb, labels)) in zip(axes[0], panels.items(), strict=True):
        pca = PCA(n_components=2, random_state=0)
        xy = pca.fit_transform(np.asarray(emb))
        labels = np.asarray(labels)
        for k, lname in enumerate(label_names):
            m = labels == k
            ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.5, color=f"C{3 if k == 0 else 2}", label=lname)
        ev = pca.explained_variance_ratio_
        ax.set_title(f"{name}\n(PC1+PC2 explain {100 * ev.sum():.0f}% of variance)", fontsize=9)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        ax.legend(fontsize=8, markerscale=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_label_curve(curves: dict[str, tuple[Sequence[int], Sequence[float]]], baseline: float | None = None,
                     title: str = "Probe accuracy vs labelled examples"):
    """Dev accuracy against number of labelled training rows (log x), one line per named feature set."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for name, (ns, accs) in curves.items():
        ax.plot(ns, accs, "o-", label=name)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls=":", label=f"majority class ({baseline:.3f})")
    ax.set_xscale("log")
    return _finish(fig, ax, "labelled training sentences", "dev accuracy", title)


def plot_epoch_curves(histories: dict[str, Sequence[dict] | Sequence[Sequence[dict]]], baseline: float | None = None,
                      title: str = "Dev accuracy per epoch"):
    """Dev accuracy after each epoch per named run; a list of runs (seeds) gives thin lines and their bold mean."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for k, (name, runs) in enumerate(histories.items()):
        runs = list(runs) if runs and isinstance(runs[0], (list, tuple)) else [runs]
        for hist in runs if len(runs) > 1 else []:
            ax.plot([h["epoch"] for h in hist], [h["eval_accuracy"] for h in hist], "-", color=f"C{k}", lw=0.8,
                    alpha=0.4)
        mean = np.mean([[h["eval_accuracy"] for h in hist] for hist in runs], axis=0)
        label = name if len(runs) == 1 else f"{name}, mean of {len(runs)} seeds"
        ax.plot([h["epoch"] for h in runs[0]], mean, "o-", color=f"C{k}", label=label)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls=":", label=f"majority class ({baseline:.3f})")
    ax.set_xticks(sorted({h["epoch"] for runs in histories.values() for h in np.ravel(runs)}))
    return _finish(fig, ax, "epoch", "dev accuracy", title)


def plot_delta_grid(grid, title: str = "Relative change ‖δ‖ / ‖θ_s‖ per layer and parameter type"):
    """Heat map of a layer × type table of relative changes (delta.norm_grid), annotated in per cent."""
    values = grid.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(FIGSIZE[0] * 1.25, FIGSIZE[1] * 1.1))
    im = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto")
    ax.set_xticks(range(values.shape[1]), list(grid.columns), rotation=30, ha="right")
    ax.set_yticks(range(values.shape[0]), list(grid.index))
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{100 * v:.1f}", ha="center", va="center", fontsize=7,
                    color="white" if v < np.nanmax(values) * 0.6 else "black")
    fig.colorbar(im, ax=ax, label="‖δ‖ / ‖θ_s‖ (cells in %)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_scale_sweep(scales: Sequence[float], accuracies: Sequence[float], baseline: float | None = None,
                     title: str = "Dev accuracy of θ_s + λ·δ"):
    """Dev accuracy against the scale λ of the update (λ = 0: the source encoder, λ = 1: the fine-tuned one)."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(scales, accuracies, "o-", color="C0", label="θ_s + λ·δ")
    ax.axvline(1.0, color="C2", ls="--", lw=1, label="λ = 1 (θ_t)")
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls=":", label=f"majority class ({baseline:.3f})")
    return _finish(fig, ax, "λ (scale of δ)", "dev accuracy", title)


def plot_param_efficiency(names: Sequence[str], trainable: Sequence[int], accuracies: Sequence[float],
                          seconds: Sequence[float], title: str = "Trainable parameters vs dev accuracy"):
    """One point per strategy: trainable parameters (log x) vs dev accuracy; marker area ∝ training time."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    t = np.asarray(seconds, dtype=float)
    sizes = 40 + 400 * t / max(t.max(), 1e-9)
    for i, (n, p, a, s) in enumerate(zip(names, trainable, accuracies, t, strict=True)):
        ax.scatter(p, a, s=sizes[i], color=f"C{i}", alpha=0.7)
        ax.annotate(f"{n}\n{s:.0f} s", (p, a), textcoords="offset points", xytext=(8, -4), fontsize=8)
    ax.set_xscale("log")
    lo, hi = min(trainable), max(trainable)
    ax.set_xlim(lo / 3, hi * 8)
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("dev accuracy")
    ax.set_title(title + " (marker area ∝ training time)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_reliability(curves: dict[str, dict], eces: dict[str, float] | None = None,
                     title: str = "Reliability diagram"):
    """Accuracy against mean confidence per bin (from calibration.reliability_curve), one panel per curve."""
    fig, axes = plt.subplots(1, len(curves), figsize=(FIGSIZE[0] * 0.75 * len(curves), FIGSIZE[1] * 1.1),
                             sharey=True, squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items(), strict=True):
        edges, used = c["edges"], c["count"] > 0
        width = edges[1] - edges[0]
        ax.bar(edges[:-1][used], c["accuracy"][used], width=width, align="edge", edgecolor="k", alpha=0.7,
               label="accuracy in bin")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.plot(c["confidence"][used], c["accuracy"][used], "o", color="C3", ms=3, label="(mean conf., acc.)")
        lo = max(0.0, edges[:-1][used].min() - width)
        ax.set_xlim(lo, 1)
        ax.set_ylim(0, 1)
        ece = f" (ECE {eces[name]:.3f})" if eces and name in eces else ""
        ax.set_title(name + ece, fontsize=10)
        ax.set_xlabel("confidence (top-label probability)")
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_learning_curve(sizes: Sequence[int], curves: dict[str, Sequence[float]],
                        baseline: float | None = None, title: str = "Dev accuracy against training examples"):
    """Accuracy against training-set size (log x), one line per model; NaN points are left out."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for i, (name, accs) in enumerate(curves.items()):
        x, y = np.asarray(sizes, dtype=float), np.asarray(accs, dtype=float)
        ok = ~np.isnan(y)
        ax.plot(x[ok], y[ok], "o-" if i == 0 else "s--", label=name)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls=":", label=f"majority class ({baseline:.3f})")
    ax.set_xscale("log")
    ax.set_xticks(list(sizes), [f"{int(n):,}" for n in sizes])
    ax.minorticks_off()
    return _finish(fig, ax, "training examples (log scale)", "dev accuracy", title, title_size=10)


def plot_lm_curves(histories: dict[str, Sequence[dict]], baselines: dict[str, float] | None = None,
                   title: str = "Language-model pretraining"):
    """Per model: train and held-out loss by step; held-out perplexity (log scale) against baselines."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(FIGSIZE[0] * 1.5, FIGSIZE[1]))
    for k, (name, hist) in enumerate(histories.items()):
        steps = [h["step"] for h in hist]
        a1.plot(steps, [h["train_loss"] for h in hist], "-", color=f"C{k}", label=f"{name} train")
        a1.plot(steps, [h["heldout_loss"] for h in hist], "o--", color=f"C{k}", label=f"{name} held-out")
        a2.plot(steps, [np.exp(h["heldout_loss"]) for h in hist], "o-", color=f"C{k}", label=name)
    for j, (name, ppl) in enumerate((baselines or {}).items()):
        a2.axhline(ppl, color="grey", ls=[":", "--", "-."][j % 3], label=f"{name} ({ppl:,.0f})")
    a1.set_xlabel("step")
    a1.set_ylabel("cross-entropy (nats / token)")
    a1.legend(fontsize=7)
    a2.set_yscale("log")
    a2.set_xlabel("step")
    a2.set_ylabel("held-out perplexity")
    a2.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig



def plot_step_curve(step_losses: Sequence[float], evals: Sequence[dict], baseline: float | None = None,
                    window: int = 10, title: str = "Training loop"):
    """Per-step training loss (with a running mean) and dev accuracy at the steps it was measured (dicts with
    'step' and 'dev_accuracy')."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(FIGSIZE[0] * 1.5, FIGSIZE[1]))
    steps = np.arange(1, len(step_losses) + 1)
    a1.plot(steps, step_losses, color="C0", alpha=0.3, lw=1, label="train loss per step")
    if len(step_losses) >= window:
        run = np.convolve(step_losses, np.ones(window) / window, mode="valid")
        a1.plot(steps[window - 1:], run, color="C0", label=f"running mean of {window}")
    a1.set_xlabel("optimiser step")
    a1.set_ylabel("cross-entropy")
    a1.legend(fontsize=8)
    a2.plot([e["step"] for e in evals], [e["dev_accuracy"] for e in evals], "o-", color="C2", label="dev accuracy")
    if baseline is not None:
        a2.axhline(baseline, color="grey", ls=":", label=f"majority class ({baseline:.3f})")
    fig.suptitle(title)
    return _finish(fig, a2, "optimiser step", "accuracy", "")


def plot_attention(panels: dict[str, np.ndarray], tokens: Sequence[str], title: str = "Attention weights"):
    """One small heat map per panel: row i (query) over columns j (keys), labelled with the tokens."""
    fig, axes = plt.subplots(1, len(panels), figsize=(2.9 * len(panels) + 0.6, 3.2), squeeze=False)
    for ax, (name, w) in zip(axes[0], panels.items(), strict=True):
        im = ax.imshow(np.asarray(w, dtype=float), cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens if ax is axes[0][0] else [], fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("key (looked at)", fontsize=8)
    axes[0][0].set_ylabel("query (looking)", fontsize=8)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_paired_comparison(cis: dict[str, dict], counts: dict[str, int], title: str = "Two models, the same rows"):
    """Accuracy with its bootstrap interval per model, and the 2 x 2 table of who is right on each row (McNemar)."""
    names = list(cis)
    if len(names) != 2:
        raise ValueError(f"plot_paired_comparison compares two models, got {len(names)}: {names}")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(FIGSIZE[0] * 1.5, FIGSIZE[1]))
    for i, name in enumerate(names):
        ci = cis[name]
        a1.errorbar([i], [ci["value"]], yerr=[[ci["value"] - ci["low"]], [ci["high"] - ci["value"]]], fmt="o",
                    capsize=6, color=f"C{i}", label=f"{name}: {ci['value']:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]")
    a1.set_xticks(range(2), names)
    a1.set_xlim(-0.6, 1.6)
    a1.set_ylabel("dev accuracy (95 % bootstrap interval)")
    lo, hi = min(ci["low"] for ci in cis.values()), max(ci["high"] for ci in cis.values())
    a1.set_ylim(lo - 0.1 * (hi - lo), hi + 0.5 * (hi - lo))  # room for the legend above the bars
    a1.legend(fontsize=8, loc="upper left")
    grid = np.array([[counts["both"], counts["a_only"]], [counts["b_only"], counts["neither"]]])
    a2.imshow(grid, cmap="Blues")
    for (r, c), v in np.ndenumerate(grid):
        a2.text(c, r, f"{v:,}", ha="center", va="center", color="white" if v > grid.max() / 2 else "black")
    a2.set_xticks(range(2), ["right", "wrong"])
    a2.set_yticks(range(2), ["right", "wrong"])
    a2.set_xlabel(names[1])
    a2.set_ylabel(names[0])
    a2.set_title("rows by who is right (off-diagonal: McNemar)", fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_label_budget(curves: dict[str, dict[int, Sequence[float]]], baseline: float | None = None,
                      title: str = "Dev accuracy vs labelled examples", styles: dict[str, str] | None = None):
    """Mean accuracy per size (log x) with error bars of ± one sd over the draws, one line per arm."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for name, curve in curves.items():
        ns = sorted(curve)
        means = [float(np.mean(curve[n])) for n in ns]
        sds = [float(np.std(curve[n], ddof=1)) if len(curve[n]) > 1 else 0.0 for n in ns]
        ax.errorbar(ns, means, yerr=sds, fmt=(styles or {}).get(name, "o-"), capsize=3, label=name)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls=":", label=f"majority class ({baseline:.3f})")
    ax.set_xscale("log")
    return _finish(fig, ax, "labelled training rows (log scale; bars: ± 1 sd over draws)", "dev accuracy", title)


def plot_reliability_with_counts(probs: np.ndarray, labels: Sequence[int], n_bins: int = 15,
                                 title: str = "Reliability diagram"):
    """Accuracy per confidence bin with each bin's row count written on it, and the confidence histogram below."""
    from .calibration import bins_reached, expected_calibration_error, reliability_curve

    c = reliability_curve(probs, labels, n_bins)
    edges, count, used = c["edges"], c["count"], c["count"] > 0
    width = edges[1] - edges[0]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(FIGSIZE[0], FIGSIZE[1] * 1.6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    top.bar(edges[:-1][used], c["accuracy"][used], width=width, align="edge", edgecolor="k", alpha=0.7,
            label="accuracy in bin")
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.plot(c["confidence"][used], c["accuracy"][used], "o", color="C3", ms=3, label="(mean conf., acc.)")
    for left, k in zip(edges[:-1][used], count[used], strict=True):  # each bin's rows, at the foot of its bar
        top.text(left + width / 2, 0.02, f"{k:,}", ha="center", va="bottom", fontsize=7)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy")
    top.legend(fontsize=7, loc="upper left")
    ece = expected_calibration_error(probs, labels, n_bins)
    top.set_title(f"{title} (ECE {ece:.3f}; {bins_reached(probs, n_bins)} of {n_bins} bins hold rows; "
                  f"n = {int(count.sum()):,})", fontsize=10)
    bottom.bar(edges[:-1], count, width=width, align="edge", edgecolor="k", color="C7")
    bottom.set_ylabel("rows")
    bottom.set_xlabel("confidence (top-label probability)")
    bottom.set_xlim(max(0.0, edges[:-1][used].min() - width), 1)
    fig.tight_layout()
    return fig
