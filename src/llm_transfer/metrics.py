"""Classification metrics (scikit-learn does the arithmetic) and simple baselines."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support


def majority_baseline(train_labels: Sequence[int], eval_labels: Sequence[int]) -> dict:
    """Accuracy of always predicting the training split's most frequent label."""
    majority = int(np.bincount(np.asarray(train_labels)).argmax())
    return {"label": majority, "accuracy": float(accuracy_score(eval_labels, [majority] * len(eval_labels)))}


def bootstrap_ci(y_true: Sequence[int], y_pred: Sequence[int], n_resamples: int = 2000, level: float = 0.95,
                 seed: int = 0, metric=accuracy_score) -> dict:
    """Point value and percentile bootstrap interval of a metric, resampling rows with replacement."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) != len(y_pred) or len(y_true) == 0:
        raise ValueError(f"y_true and y_pred need equal non-zero lengths, got {len(y_true)}, {len(y_pred)}.")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y_true), size=(n_resamples, len(y_true)))
    if metric is accuracy_score:  # vectorised fast path
        stats = (y_true[idx] == y_pred[idx]).mean(axis=1)
    else:
        stats = np.array([metric(y_true[i], y_pred[i]) for i in idx])
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return {"value": float(metric(y_true, y_pred)), "low": float(lo), "high": float(hi), "level": level,
            "n_resamples": n_resamples}


def mcnemar(y_true: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int]) -> dict:
    """McNemar's exact test of two classifiers on the same rows: do they differ more than chance would make them?

    Only the rows where exactly one of them is right count: b (A right, B wrong) and c (A wrong, B right). Under
    "equally accurate", each such row is a fair coin, so the two-sided p-value is scipy's exact binomial test of b
    successes in b + c draws with p = 1/2.
    """
    from scipy.stats import binomtest

    y, a, b_ = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    if not len(y) == len(a) == len(b_) or len(y) == 0:
        raise ValueError(f"mcnemar needs three equal non-zero lengths, got {len(y)}, {len(a)}, {len(b_)}.")
    right_a, right_b = a == y, b_ == y
    b, c = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    both, neither = int((right_a & right_b).sum()), int((~right_a & ~right_b).sum())
    return {"a_only": b, "b_only": c, "both": both, "neither": neither, "p_value": p, "n": int(len(y))}


def per_class_report(y_true: Sequence[int], y_pred: Sequence[int], names: Sequence[str]) -> dict[str, dict]:
    """Precision, recall, F1 and support per class name (scikit-learn's precision_recall_fscore_support)."""
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(len(names))),
                                                 zero_division=0)
    return {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, n in enumerate(names)}


NEGATION = re.compile(r"(?:\b(?:not|no|never)\b|n't\b)")


def has_negation(text: str) -> bool:
    """True when the lower-cased text holds the word not, no or never, or the clitic n't."""
    return NEGATION.search(text.lower()) is not None


def length_bucket(n_tokens: int, edges: Sequence[int] = (10, 20, 30)) -> str:
    """The bucket label of a token count: '≤10', '11–20', '21–30', '>30' for the default edges."""
    lo = 0
    for e in edges:
        if n_tokens <= e:
            return f"≤{e}" if lo == 0 else f"{lo + 1}–{e}"
        lo = e
    return f">{edges[-1]}"


def accuracy_by_group(correct: Sequence[bool], groups: Sequence[str],
                      order: Sequence[str] | None = None) -> dict:
    """Accuracy and row count for each group label, in `order` (default: first appearance)."""
    correct, groups = np.asarray(correct, dtype=bool), np.asarray(groups)
    order = list(order) if order is not None else list(dict.fromkeys(groups.tolist()))
    out = {}
    for g in order:
        m = groups == g
        out[g] = {"n": int(m.sum()), "accuracy": float(correct[m].mean()) if m.any() else float("nan")}
    return out


def most_confident_errors(texts: Sequence[str], labels: Sequence[int], probs: np.ndarray,
                          k: int = 10) -> list[dict]:
    """The k wrong predictions made with the highest probability, most confident first."""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    pred = probs.argmax(-1)
    wrong = np.flatnonzero(pred != labels)
    top = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:k]
    return [{"sentence": texts[i], "label": int(labels[i]), "predicted": int(pred[i]),
             "p_predicted": float(probs[i, pred[i]])} for i in top]
