"""Metrics and calibration against hand-computed cases."""

import numpy as np
import pytest

from llm_transfer.calibration import (
    cross_fit_temperature,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_curve,
    softmax,
)
from llm_transfer.metrics import (
    accuracy_by_group,
    bootstrap_ci,
    has_negation,
    length_bucket,
    majority_baseline,
    mcnemar,
    most_confident_errors,
    per_class_report,
)


def probs_at(conf: float, labels_pred: np.ndarray) -> np.ndarray:
    """Two-class probabilities giving `conf` to the predicted class of each row."""
    p = np.full((len(labels_pred), 2), 1 - conf)
    p[np.arange(len(labels_pred)), labels_pred] = conf
    return p


def test_majority_baseline():
    assert majority_baseline([1, 1, 0], [0, 1, 1, 1]) == {"label": 1, "accuracy": 0.75}


def test_bootstrap_ci_brackets_the_point_and_is_seeded():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    pred = np.where(rng.random(500) < 0.8, y, 1 - y)
    ci = bootstrap_ci(y, pred, n_resamples=1000, seed=3)
    assert ci["value"] == pytest.approx((y == pred).mean())
    assert ci["low"] < ci["value"] < ci["high"]
    # the normal approximation's half-width is 1.96 * sqrt(p(1-p)/n) ~ 0.035 here
    assert 0.025 < (ci["high"] - ci["low"]) / 2 < 0.045
    assert bootstrap_ci(y, pred, n_resamples=1000, seed=3) == ci
    with pytest.raises(ValueError):
        bootstrap_ci([1, 0], [1])


def test_per_class_report_hand_computed():
    # negatives: 3 true, 2 found, 1 false alarm -> P 2/3, R 2/3; positives: 2 true, 1 found -> P 1/2, R 1/2
    y = [0, 0, 0, 1, 1]
    pred = [0, 0, 1, 0, 1]
    r = per_class_report(y, pred, ["negative", "positive"])
    assert r["negative"]["precision"] == pytest.approx(2 / 3)
    assert r["negative"]["recall"] == pytest.approx(2 / 3)
    assert r["positive"]["f1"] == pytest.approx(0.5)
    assert r["positive"]["support"] == 2


@pytest.mark.parametrize("text,expected", [
    ("it does n't work", True), ("this is not good", True), ("no laughs", True), ("never again", True),
    ("I don't like it", True), ("nothing special , notably", False), ("a knot of noble notions", False),
])
def test_has_negation(text, expected):
    assert has_negation(text) is expected


def test_length_bucket_edges():
    got = [length_bucket(n) for n in (3, 10, 11, 20, 21, 30, 31)]
    assert got == ["≤10", "≤10", "11–20", "11–20", "21–30", "21–30", ">30"]


def test_accuracy_by_group():
    out = accuracy_by_group([1, 0, 1, 1], ["a", "a", "b", "b"], order=["b", "a", "c"])
    assert list(out) == ["b", "a", "c"]
    assert out["a"] == {"n": 2, "accuracy": 0.5} and out["b"]["accuracy"] == 1.0
    assert out["c"]["n"] == 0 and np.isnan(out["c"]["accuracy"])


def test_most_confident_errors_order():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95]])
    labels = [1, 1, 1, 0]  # rows 0, 2, 3 are wrong, with confidence 0.9, 0.6, 0.95
    errs = most_confident_errors(["a", "b", "c", "d"], labels, probs, k=2)
    assert [e["sentence"] for e in errs] == ["d", "a"]
    assert errs[0]["p_predicted"] == pytest.approx(0.95) and errs[0]["predicted"] == 1


def test_ece_zero_when_confidence_matches_accuracy():
    labels = np.array([1] * 8 + [0] * 2)
    probs = probs_at(0.8, np.ones(10, dtype=int))  # 80 % confident, 80 % right
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_overconfident_case():
    labels = np.array([1] * 6 + [0] * 4)
    probs = probs_at(0.9, np.ones(10, dtype=int))  # 90 % confident, 60 % right -> gap 0.3
    assert expected_calibration_error(probs, labels) == pytest.approx(0.3)


def test_ece_weights_bins_by_count():
    # 10 rows at 0.9 (all right: gap 0.1) and 30 rows at 0.6 (half right: gap 0.1) -> 0.1
    pred = np.ones(40, dtype=int)
    probs = np.vstack([probs_at(0.9, pred[:10]), probs_at(0.6, pred[10:])])
    labels = np.array([1] * 10 + [1, 0] * 15)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.1)
    c = reliability_curve(probs, labels, n_bins=15)
    assert c["count"].sum() == 40 and (c["count"] > 0).sum() == 2
    assert len(c["edges"]) == 16


def overconfident_logits(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose calibrated form has margin m, scaled by 4: the right temperature is 4."""
    rng = np.random.default_rng(seed)
    margin = rng.normal(0, 2, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(int)
    logits = np.stack([np.zeros(n), 4 * margin], axis=1)
    return logits, labels


def test_temperature_scaling_fixes_overconfidence():
    logits, labels = overconfident_logits()
    t = fit_temperature(logits, labels)
    assert 3.0 < t < 5.5
    before, after = softmax(logits), softmax(logits, t)
    assert nll(after, labels) < nll(before, labels) - 0.1
    assert expected_calibration_error(after, labels) < expected_calibration_error(before, labels)


def test_cross_fit_temperature_is_out_of_fold():
    logits, labels = overconfident_logits(1000, seed=1)
    probs, temps = cross_fit_temperature(logits, labels, folds=2, seed=0)
    assert probs.shape == logits.shape and np.allclose(probs.sum(1), 1)
    assert len(temps) == 2 and all(2.5 < t < 6 for t in temps) and temps[0] != temps[1]
    assert nll(probs, labels) < nll(softmax(logits), labels)


def test_fit_temperature_rejects_bad_shapes():
    with pytest.raises(ValueError):
        fit_temperature(np.zeros(5), np.zeros(5, dtype=int))


def test_mcnemar_counts_disagreements_and_matches_the_binomial_by_hand():
    from math import comb

    y = np.array([1] * 20)
    a = np.array([1] * 12 + [0] * 8)          # A right on 12
    b = np.array([1] * 4 + [0] * 8 + [1] * 3 + [0] * 5)  # both right on 4, only A on 8, only B on 3, neither 5
    r = mcnemar(y, a, b)
    assert (r["both"], r["a_only"], r["b_only"], r["neither"], r["n"]) == (4, 8, 3, 5, 20)
    by_hand = min(1.0, 2 * sum(comb(11, k) for k in range(0, 4)) / 2 ** 11)  # two-sided: 2 x P(X <= 3), X~B(11, .5)
    assert r["p_value"] == pytest.approx(by_hand, rel=1e-12)
    assert mcnemar(y, b, a)["p_value"] == pytest.approx(r["p_value"])  # symmetric
    assert mcnemar(y, a, a)["p_value"] == 1.0  # no disagreement: no evidence
    far = mcnemar(np.ones(200), np.ones(200), np.r_[np.ones(150), np.zeros(50)])
    assert far["p_value"] < 1e-12  # 50 rows only A gets right, none only B: not chance
    with pytest.raises(ValueError, match="equal non-zero lengths"):
        mcnemar([1, 0], [1], [0, 1])
