"""How many labels is a start worth: the same random subsets for every arm, curves over sizes, labels to reach a level.

Every arm (a probe, TF-IDF, a model trained from scratch) is a function from the row indices it may train on to its
accuracy on the reported split; it chooses its own settings on a validation split, never on the reported one.
Subsets are drawn once, so at each size every arm sees the same rows (a paired comparison).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd


def draw_subsets(pool_size: int, sizes: Sequence[int], draws: int, seed: int = 0) -> dict[int, list[np.ndarray]]:
    """For each size n, `draws` random n-row subsets of range(pool_size) (one: all rows, when n is the pool)."""
    if draws < 1 or any(n < 2 or n > pool_size for n in sizes):
        raise ValueError(f"need draws >= 1 and sizes in [2, {pool_size}], got draws={draws}, sizes={list(sizes)}.")
    rng = np.random.default_rng(seed)
    return {int(n): [np.arange(pool_size)] if n == pool_size else
            [np.sort(rng.permutation(pool_size)[:n]) for _ in range(draws)] for n in sizes}


def run_curve(arm: Callable[[np.ndarray], float], subsets: Mapping[int, Sequence[np.ndarray]]
              ) -> dict[int, list[float]]:
    """The arm's accuracy on every subset: {n: [accuracy of each draw]}."""
    return {n: [float(arm(rows)) for rows in draws] for n, draws in subsets.items()}


def curve_table(curves: Mapping[str, Mapping[int, Sequence[float]]]) -> pd.DataFrame:
    """Mean ± sd per arm (rows) and size (columns), as strings; one draw prints its value alone."""
    return pd.DataFrame({arm: {n: f"{np.mean(a):.3f} ± {np.std(a, ddof=1):.3f}" if len(a) > 1 else f"{a[0]:.3f}"
                               for n, a in c.items()} for arm, c in curves.items()}).T.rename_axis("labelled rows",
                                                                                                   axis=1)


def _reach(sizes: np.ndarray, means: np.ndarray, target: float) -> float:
    """The size where the mean curve first reaches target, interpolated on log(size); inf when it never does."""
    above = np.flatnonzero(means >= target)
    if len(above) == 0:
        return float("inf")
    i = int(above[0])
    if i == 0:
        return float(sizes[0])
    x0, x1, y0, y1 = np.log(sizes[i - 1]), np.log(sizes[i]), means[i - 1], means[i]
    return float(np.exp(x0 + (target - y0) / (y1 - y0) * (x1 - x0)))


def labels_to_reach(curve: Mapping[int, Sequence[float]], target: float, n_boot: int = 2000, level: float = 0.95,
                    seed: int = 0) -> dict:
    """Labels the arm needs to reach `target` (log-interpolated mean curve), with a bootstrap interval over draws.

    'labels' is sizes[0] when the smallest size already reaches it (an upper bound) and inf when no size does.
    """
    sizes = np.array(sorted(curve), dtype=float)
    accs = [np.asarray(curve[int(n)], float) for n in sizes]
    point = _reach(sizes, np.array([a.mean() for a in accs]), target)
    rng = np.random.default_rng(seed)
    boot = [_reach(sizes, np.array([rng.choice(a, len(a)).mean() for a in accs]), target) for _ in range(n_boot)]
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")  # inf-safe
    return {"labels": point, "low": float(lo), "high": float(hi), "target": float(target),
            "below_smallest": point == sizes[0]}


def paired_gain(curve_a: Mapping[int, Sequence[float]], curve_b: Mapping[int, Sequence[float]]) -> pd.DataFrame:
    """Per size: mean of a − b over the shared draws, its sd, and how many draws a wins."""
    rows = {}
    for n in curve_a:
        d = np.asarray(curve_a[n]) - np.asarray(curve_b[n])
        rows[n] = {"mean gain": d.mean(), "sd": d.std(ddof=1) if len(d) > 1 else np.nan, "draws": len(d),
                   "a wins": int((d > 0).sum())}
    return pd.DataFrame(rows).T.rename_axis("labelled rows")


def paired_gain_ci(y_true: Sequence[int], preds_a: Sequence[Sequence[int]], preds_b: Sequence[Sequence[int]],
                   n_resamples: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Accuracy gain of arm a over arm b, averaged over paired draws, with a bootstrap interval over sentences.

    preds_a[k] and preds_b[k] are the two arms' predictions on the same reported rows after training on the same
    k-th draw of labelled rows. Sentences are resampled whole (all draws' predictions on a sentence together), so
    the interval covers which sentences the reported split happens to hold; the draws' own spread is `sd`.
    """
    y = np.asarray(y_true)
    a, b = np.asarray(preds_a), np.asarray(preds_b)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != len(y) or len(y) == 0:
        raise ValueError(f"need two (draws, {len(y)}) prediction arrays of one shape, got {a.shape} and {b.shape}.")
    per_draw = (a == y).mean(1) - (b == y).mean(1)
    d = ((a == y).astype(float) - (b == y)).mean(0)  # per sentence: the gain averaged over draws
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_resamples, len(d)))
    means = d[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    p = (1 + int((np.abs(means - d.mean()) >= abs(d.mean())).sum())) / (1 + n_resamples)
    return {"gain": float(d.mean()), "low": float(lo), "high": float(hi), "p_value": float(p),
            "sd": float(per_draw.std(ddof=1)) if len(per_draw) > 1 else float("nan"), "draws": len(per_draw),
            "a wins": int((per_draw > 0).sum())}
