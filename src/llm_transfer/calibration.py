"""Calibration: expected calibration error and its noise floor, reliability diagrams, temperature scaling
(Guo et al. 2017)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

N_BINS = 15  # equal-width confidence bins, the common choice since Guo et al. (2017)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, computed stably."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(probs: np.ndarray, labels: Sequence[int], eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true labels under class probabilities."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], eps, 1.0)).mean())


def _check(probs: np.ndarray, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities as an (n, classes) array and labels as ints, with matching, non-zero lengths."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(f"need probs of shape (n, classes) and n labels, got {probs.shape}, {labels.shape}.")
    return probs, labels


def _bin_of(conf: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The n_bins + 1 equal-width edges on [0, 1] and each confidence's bin index."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}.")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds confidences in (edges[b], edges[b + 1]]; a confidence of exactly 0 goes to bin 0
    return edges, np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)


def reliability_curve(probs: np.ndarray, labels: Sequence[int], n_bins: int = N_BINS) -> dict:
    """Per equal-width bin of top-label confidence: bin edges, row count, mean confidence and accuracy."""
    probs, labels = _check(probs, labels)
    conf, correct = probs.max(-1), probs.argmax(-1) == labels
    edges, which = _bin_of(conf, n_bins)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=correct, minlength=n_bins) / count
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": accuracy}


def expected_calibration_error(probs: np.ndarray, labels: Sequence[int], n_bins: int = N_BINS) -> float:
    """ECE = sum over equal-width bins of (rows in bin / n) * |accuracy - mean top-label confidence|."""
    c = reliability_curve(probs, labels, n_bins)
    used = c["count"] > 0
    gaps = np.abs(c["accuracy"][used] - c["confidence"][used])
    return float((c["count"][used] / c["count"].sum() * gaps).sum())


def fit_temperature(logits: np.ndarray, labels: Sequence[int], max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) (one parameter, L-BFGS on log T)."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"need logits of shape (n, classes) and n labels, got {tuple(z.shape)}, {len(y)}.")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.exp().item())


def cross_fit_temperature(logits: np.ndarray, labels: Sequence[int], folds: int = 2,
                          seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold calibrated probabilities: each fold scaled by a temperature fitted on the other folds."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    fold_of = np.random.default_rng(seed).permutation(len(labels)) % folds
    probs = np.zeros(logits.shape, dtype=np.float64)
    temps = []
    for k in range(folds):
        t = fit_temperature(logits[fold_of != k], labels[fold_of != k])
        probs[fold_of == k] = softmax(logits[fold_of == k], t)
        temps.append(t)
    return probs, temps


def _confidences(probs: np.ndarray) -> np.ndarray:
    """Top-label confidences of an (n, classes) probability array; ValueError for another shape or n = 0."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0 or probs.shape[1] < 2:
        raise ValueError(f"need probs of shape (n, classes >= 2) with n > 0, got {probs.shape}.")
    return probs.max(-1)


def bins_reached(probs: np.ndarray, n_bins: int = N_BINS) -> int:
    """How many of the equal-width confidence bins hold a row (two classes: confidence >= 0.5, so 8 of 15 at most)."""
    _, which = _bin_of(_confidences(probs), n_bins)
    return int(np.unique(which).size)


def ece_noise_floor(probs: np.ndarray, n_bins: int = N_BINS, n_resamples: int = 200, seed: int = 0,
                    resample_rows: bool = True) -> dict:
    """ECE a perfectly calibrated model with these confidences would score: mean and 95th percentile over resamples.

    Consistency resampling (Bröcker & Smith 2007, Weather and Forecasting 22:651): each resample draws n rows'
    confidences with replacement (unless resample_rows=False) and then whether each row is right, y* ~ Bernoulli(
    confidence), so the model is calibrated by construction; its ECE over the same bins as expected_calibration_error
    is pure sampling noise. An observed ECE below the 95th percentile is not evidence of miscalibration.
    """
    conf = _confidences(probs)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}.")
    n = len(conf)
    _, which = _bin_of(conf, n_bins)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n)) if resample_rows else np.broadcast_to(np.arange(n),
                                                                                            (n_resamples, n))
    c = conf[idx]
    right = rng.random(c.shape) < c
    # per resample and bin: sum of (right - confidence) = n_b (accuracy_b - mean confidence_b)
    key = np.arange(n_resamples)[:, None] * n_bins + which[idx]
    gaps = np.bincount(key.ravel(), weights=(right - c).ravel(), minlength=n_resamples * n_bins)
    values = np.abs(gaps.reshape(n_resamples, n_bins)).sum(axis=1) / n
    return {"mean": float(values.mean()), "p95": float(np.quantile(values, 0.95)), "values": values, "n": n,
            "n_bins": n_bins, "n_resamples": n_resamples}
