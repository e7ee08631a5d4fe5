"""Classification metrics (scikit-learn does the arithmetic) and simple baselines."""

from __future__ import annotations

import functools
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


NEGATION = re.compile(r"(?:\b(?:not|no|never)\b|n't\b)")  # the original four cues, has_negation's default
NEGATION_CUES = ("not", "n't", "no", "never", "nothing", "nobody", "none", "neither", "nor", "nowhere", "without",
                 "hardly", "barely", "scarcely", "cannot", "lack", "lacks", "lacking")


def negation_cues() -> tuple[str, ...]:
    """The fuller negation cue list (whole words, plus the clitic n't) for has_negation(text, cues=...)."""
    return NEGATION_CUES


@functools.lru_cache(maxsize=32)
def _negation_pattern(cues: tuple[str, ...]) -> re.Pattern:
    """One regex for whole-word cues and the clitic n't (which also matches inside "don't" and SST's "does n't")."""
    words = [c.lower() for c in cues if c.lower() != "n't"]
    bad = [c for c in words if not re.fullmatch(r"[a-z]+", c)]
    if bad or not cues:
        raise ValueError(f"negation cues must be letters-only words or \"n't\", got {bad or 'none'}.")
    parts = [r"\b(?:" + "|".join(map(re.escape, words)) + r")\b"] if words else []
    if len(words) < len(cues):
        parts.append(r"n['\u2019]t\b")
    return re.compile("(?:" + "|".join(parts) + ")")


def has_negation(text: str, cues: Sequence[str] | None = None) -> bool:
    """True when the lower-cased text holds a cue: by default not, no, never or n't; pass negation_cues() for more."""
    pattern = NEGATION if cues is None else _negation_pattern(tuple(cues))
    return pattern.search(text.lower()) is not None


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


# --- GLUE's and NER's metrics, written out by hand (tests check them against scikit-learn, scipy and seqeval) -----

def _paired(y_true, y_pred, what: str, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D arrays of equal, non-zero length; ValueError otherwise."""
    a, b = np.asarray(y_true, dtype=dtype), np.asarray(y_pred, dtype=dtype)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"{what} needs two 1-D sequences of equal non-zero length, got shapes {a.shape}, {b.shape}.")
    return a, b


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    """The fraction of rows where the prediction equals the label."""
    a, b = _paired(y_true, y_pred, "accuracy")
    return float((a == b).mean())


def binary_f1(y_true: Sequence[int], y_pred: Sequence[int], positive: int = 1) -> float:
    """F1 of the positive class, 2TP / (2TP + FP + FN); 0 when there is no positive label or prediction."""
    a, b = _paired(y_true, y_pred, "binary_f1")
    tp = int(((a == positive) & (b == positive)).sum())
    fp = int(((a != positive) & (b == positive)).sum())
    fn = int(((a == positive) & (b != positive)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def matthews_correlation(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Matthews correlation coefficient (any number of classes), from the confusion matrix C.

    With s rows, c = trace(C) correct, t_k = rows of true class k and p_k = rows predicted k:
    MCC = (c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2)(s^2 - sum_k t_k^2)); 0 when either factor is 0 (one
    class predicted for every row, or one true class only), as scikit-learn returns.
    """
    a, b = _paired(y_true, y_pred, "matthews_correlation")
    classes, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    k, n = len(classes), len(a)
    conf = np.bincount(codes[:n] * k + codes[n:], minlength=k * k).reshape(k, k).astype(np.float64)
    t, p, c, s = conf.sum(axis=1), conf.sum(axis=0), np.trace(conf), float(n)
    denominator = (s * s - p @ p) * (s * s - t @ t)
    return float((c * s - p @ t) / np.sqrt(denominator)) if denominator > 0 else 0.0


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation: the centred dot product over the product of the centred norms; NaN for a constant."""
    a, b = _paired(x, y, "pearson", dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(np.clip(a @ b / denominator, -1.0, 1.0)) if denominator > 0 else float("nan")


def average_ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of the values, tied values sharing the mean of the ranks they span (scipy's 'average')."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])  # first position of each run of ties
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x), dtype=np.float64)
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + 1 + e) / 2  # mean of the 1-based ranks s+1 .. e
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the average ranks (ties share their mean rank)."""
    a, b = _paired(x, y, "spearman", dtype=np.float64)
    return pearson(average_ranks(a), average_ranks(b))


def _tag_parts(tag: str) -> tuple[str, str]:
    """('B' | 'I' | 'O', entity type) of an IOB2 tag; ValueError for anything else."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if prefix not in ("B", "I") or not kind:
        raise ValueError(f"tag {tag!r} is not IOB2 (O, B-TYPE or I-TYPE).")
    return prefix, kind


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities (type, first, last token) of one sentence's IOB2 tags, as seqeval finds them in its default mode.

    B-X starts an entity; I-X continues the entity before it only when that one is of type X; an I-X after O or after
    an entity of another type starts a new entity (seqeval does not drop it); O ends the entity before it.
    """
    spans: list[tuple[str, int, int]] = []
    open_kind, start = "", 0
    for i, tag in enumerate(tags):
        prefix, kind = _tag_parts(tag)
        if open_kind and (prefix != "I" or kind != open_kind):
            spans.append((open_kind, start, i - 1))
            open_kind = ""
        if prefix == "B" or (prefix == "I" and not open_kind):
            open_kind, start = kind, i
    if open_kind:
        spans.append((open_kind, start, len(tags) - 1))
    return spans


def _prf(correct: int, n_pred: int, n_true: int) -> dict:
    """Precision, recall and F1 from counts (0 where a denominator is 0, as seqeval's zero_division)."""
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def entity_scores(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict:
    """Entity-level precision, recall and F1 over sentences (seqeval's micro average), overall and per type.

    An entity counts as correct only when its type, first and last token all match a true entity.
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"entity_scores needs as many predicted sentences as true ones, got {len(pred_tags)} and "
                         f"{len(true_tags)}.")
    true_set, pred_set = set(), set()
    for i, (t, p) in enumerate(zip(true_tags, pred_tags, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(p)} predicted tags for {len(t)} tokens.")
        true_set.update((i, *s) for s in entity_spans(t))
        pred_set.update((i, *s) for s in entity_spans(p))
    correct = true_set & pred_set
    out = {**_prf(len(correct), len(pred_set), len(true_set)), "n_true": len(true_set), "n_pred": len(pred_set),
           "n_correct": len(correct), "per_type": {}}
    for kind in sorted({s[1] for s in true_set | pred_set}):
        n_c, n_p, n_t = (sum(1 for s in group if s[1] == kind) for group in (correct, pred_set, true_set))
        out["per_type"][kind] = {**_prf(n_c, n_p, n_t), "support": n_t}
    return out


METRICS = {"accuracy": accuracy, "f1": binary_f1, "matthews_correlation": matthews_correlation,
           "pearson": pearson, "spearman": spearman}


def task_metrics(task: str, predictions, labels) -> dict:
    """GLUE's metrics for a task (CoLA: MCC; MRPC: F1, accuracy; STS-B: Pearson, Spearman; else accuracy).

    predictions are class ids, or logits / probabilities (rows of scores, arg-maxed); for STS-B, scores (an (n, 1)
    array is flattened). The result also holds 'score', the mean of the task's metrics, which GLUE averages over tasks.
    """
    from .glue import get_task

    t = get_task(task)
    pred, y = np.asarray(predictions), np.asarray(labels)
    if t.is_regression:
        pred = pred.reshape(len(pred), -1)[:, 0] if pred.ndim == 2 and pred.shape[1] == 1 else pred
    elif pred.ndim == 2:
        pred = pred.argmax(axis=1)
    hidden = int((y == -1).sum())
    if hidden:
        raise ValueError(f"{t.title}: {hidden} of {y.size} labels are -1, GLUE's hidden test labels; score the "
                         "validation split, or submit test predictions to GLUE's server.")
    out = {name: METRICS[name](y, pred) for name in t.metrics}
    out["score"] = float(np.mean(list(out.values())))
    return out


# --- Paired comparisons and slice tests (notebooks 03-05: is a difference bigger than the dev set's noise?) --------

def _bools(values, what: str, n: int | None = None) -> np.ndarray:
    """A 1-D boolean array (of length n when given); ValueError otherwise."""
    a = np.asarray(values)
    if a.ndim != 1 or len(a) == 0 or (n is not None and len(a) != n):
        raise ValueError(f"{what} needs a 1-D sequence of {n if n is not None else 'non-zero'} values, got shape "
                         f"{a.shape}.")
    return a.astype(bool)


def paired_bootstrap_diff(y_true: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int],
                          n_resamples: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Accuracy(A) - accuracy(B) on the same rows, its paired percentile bootstrap interval and a two-sided p-value.

    Each resample draws n rows with replacement and scores both models on those rows (the rows' pairing kept), with
    the same draws as bootstrap_ci(..., seed=seed). The p-value is the centred bootstrap test (Efron & Tibshirani
    1993, ch. 16): the share of resampled differences at least as far from the observed one as the observed one
    is from 0, (1 + count) / (1 + n_resamples).
    """
    y, a, b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    if not len(y) == len(a) == len(b) or len(y) == 0 or y.ndim != 1:
        raise ValueError(f"paired_bootstrap_diff needs three equal non-zero lengths, got {len(y)}, {len(a)}, "
                         f"{len(b)}.")
    if n_resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need n_resamples >= 1 and 0 < level < 1, got {n_resamples}, {level}.")
    d = (a == y).astype(np.int64) - (b == y)  # +1: only A right, -1: only B right, 0: both or neither
    n, observed = len(d), int(d.sum())
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    sums = d[idx].sum(axis=1)  # integer sums: the test's comparison has no rounding
    lo, hi = np.quantile(sums / n, [(1 - level) / 2, (1 + level) / 2])
    p = (1 + int((np.abs(sums - observed) >= abs(observed)).sum())) / (1 + n_resamples)
    return {"difference": observed / n, "low": float(lo), "high": float(hi), "p_value": float(p), "level": level,
            "accuracy_a": float((a == y).mean()), "accuracy_b": float((b == y).mean()), "n": n,
            "n_resamples": n_resamples}


def _connor_n(delta: float, discordant_rate: float, z_a: float, z_b: float) -> float:
    """Connor's (1987) rows for McNemar's test: (z_a sqrt(psi) + z_b sqrt(psi - delta^2))^2 / delta^2."""
    return (z_a * np.sqrt(discordant_rate) + z_b * np.sqrt(discordant_rate - delta ** 2)) ** 2 / delta ** 2


def min_detectable_difference(n: int, discordant_rate: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest accuracy difference McNemar's test on n paired rows detects (two-sided alpha, given power).

    Inverts Connor's (1987, Biometrics 43:207) normal-approximation sample size for the paired design,
    n = (z_{1-alpha/2} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 / delta^2, for delta, where psi is the share of
    rows on which exactly one model is right and delta = P(only A right) - P(only B right), the accuracy difference.
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    if n < 1 or not 0 < discordant_rate <= 1 or not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"need n >= 1, 0 < discordant_rate <= 1, 0 < alpha, power < 1; got {n}, {discordant_rate}, "
                         f"{alpha}, {power}.")
    z_a, z_b = norm.ppf(1 - alpha / 2), norm.ppf(power)
    # |delta| <= psi: a difference needs that many discordant rows; the needed n falls as delta grows
    if _connor_n(discordant_rate, discordant_rate, z_a, z_b) > n:
        raise ValueError(f"{n} rows with {discordant_rate:.3g} of them discordant cannot reach power {power} at alpha "
                         f"{alpha} for any difference (at most {discordant_rate:.3g}).")
    return float(brentq(lambda delta: _connor_n(delta, discordant_rate, z_a, z_b) - n, 1e-12, discordant_rate,
                        xtol=1e-12))


def slice_test(correct: Sequence[bool], in_slice: Sequence[bool]) -> dict:
    """Accuracy inside vs outside a slice (e.g. negated sentences) and Fisher's exact two-sided p-value (scipy)."""
    from scipy.stats import fisher_exact

    ok = _bools(correct, "slice_test: correct")
    inside = _bools(in_slice, "slice_test: in_slice", len(ok))
    if inside.all() or not inside.any():
        raise ValueError(f"slice_test needs rows both inside and outside the slice, got {int(inside.sum())} of "
                         f"{len(inside)} inside.")
    table = [[int((ok & inside).sum()), int((~ok & inside).sum())], [int((ok & ~inside).sum()),
                                                                       int((~ok & ~inside).sum())]]
    odds, p = fisher_exact(table)
    acc_in, acc_out = float(ok[inside].mean()), float(ok[~inside].mean())
    return {"n_in": int(inside.sum()), "n_out": int((~inside).sum()), "accuracy_in": acc_in, "accuracy_out": acc_out,
            "difference": acc_in - acc_out, "odds_ratio": float(odds), "p_value": float(p), "table": table}


def slice_test_stratified(correct: Sequence[bool], in_slice: Sequence[bool], strata: Sequence,
                          continuity: bool = True) -> dict:
    """Cochran-Mantel-Haenszel test of slice vs correctness within strata (e.g. length buckets), as R's mantelhaen.test.

    Per stratum k the 2 x 2 table [[a, b], [c, d]] (rows: in / out of the slice; columns: right / wrong) gives
    E(a) = row_in col_right / n_k and Var(a) = row_in row_out col_right col_wrong / (n_k^2 (n_k - 1));
    X^2 = (|sum(a - E a)| - 1/2)^2 / sum Var(a) on 1 degree of freedom (the 1/2 only with continuity and when
    |sum(a - E a)| >= 1/2), and the Mantel-Haenszel common odds ratio sum(a d / n_k) / sum(b c / n_k).
    Strata of one row carry no information and are skipped (counted in 'strata_skipped').
    """
    from scipy.stats import chi2

    ok = _bools(correct, "slice_test_stratified: correct")
    inside = _bools(in_slice, "slice_test_stratified: in_slice", len(ok))
    groups = np.asarray(strata)
    if groups.shape != ok.shape:
        raise ValueError(f"slice_test_stratified needs one stratum per row, got shape {groups.shape} for {len(ok)} "
                         "rows.")
    delta = var = num = den = 0.0
    per_stratum, skipped = {}, 0
    for g in dict.fromkeys(groups.tolist()):
        m = groups == g
        k_ok, k_in, n_k = ok[m], inside[m], int(m.sum())
        a, b = int((k_ok & k_in).sum()), int((~k_ok & k_in).sum())
        c, d = int((k_ok & ~k_in).sum()), int((~k_ok & ~k_in).sum())
        per_stratum[g] = {"n_in": a + b, "n_out": c + d,
                          "accuracy_in": a / (a + b) if a + b else float("nan"),
                          "accuracy_out": c / (c + d) if c + d else float("nan")}
        if n_k < 2:
            skipped += 1
            continue
        delta += a - (a + b) * (a + c) / n_k
        var += (a + b) * (c + d) * (a + c) * (b + d) / (n_k ** 2 * (n_k - 1))
        num, den = num + a * d / n_k, den + b * c / n_k
    if var == 0:
        raise ValueError("slice_test_stratified: no stratum has rows inside and outside the slice with both right and "
                         "wrong predictions, so the strata hold no evidence either way.")
    correction = 0.5 if continuity and abs(delta) >= 0.5 else 0.0
    statistic = (abs(delta) - correction) ** 2 / var
    return {"statistic": float(statistic), "p_value": float(chi2.sf(statistic, 1)),
            "common_odds_ratio": num / den if den else (float("inf") if num else float("nan")),
            "strata": per_stratum, "strata_skipped": skipped, "crude": slice_test(ok, inside)}
