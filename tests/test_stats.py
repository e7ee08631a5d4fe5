"""The evaluation statistics do what they claim on data whose truth is known: intervals cover, tests hold their size."""

import csv

import numpy as np
import pytest
from scipy.stats import binom

from llm_transfer.calibration import bins_reached, ece_noise_floor, expected_calibration_error
from llm_transfer.metrics import (
    bootstrap_ci,
    has_negation,
    mcnemar,
    min_detectable_difference,
    negation_cues,
    paired_bootstrap_diff,
    slice_test,
    slice_test_stratified,
)


def paired_models(n: int, p_both: float, p_a_only: float, p_b_only: float, rng) -> tuple[np.ndarray, ...]:
    """Labels and two models' predictions whose rows are (both right, only A, only B, neither) with these odds."""
    kind = np.searchsorted(np.cumsum([p_both, p_a_only, p_b_only]), rng.random(n), side="right")
    y = rng.integers(0, 2, n)
    a_right, b_right = (kind == 0) | (kind == 1), (kind == 0) | (kind == 2)
    return y, np.where(a_right, y, 1 - y), np.where(b_right, y, 1 - y)


def rows_from_table(table: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(correct, in_slice) rows of a 2 x 2 table [[in & right, in & wrong], [out & right, out & wrong]]."""
    (a, b), (c, d) = table
    correct = np.r_[np.ones(a), np.zeros(b), np.ones(c), np.zeros(d)].astype(bool)
    return correct, np.r_[np.ones(a + b), np.zeros(c + d)].astype(bool)


# --- bootstrap intervals: coverage of the truth, not of their own point estimate --------------------------------

def test_bootstrap_ci_covers_a_known_p_about_95_percent_of_the_time():
    # n = 872 rows of Bernoulli(0.89), a model right on every row labelled 1: accuracy = the share of ones. The
    # interval depends on the data only through k (the number of ones), so the coverage is exact, sum_k P(K = k) *
    # [0.89 in bootstrap_ci(a data set with k ones)] over k within 5 SD (mass 1 - 6e-7): a better estimate than
    # ~300 simulated data sets (binomial SE 1.3 points), from the real function at its default 2000 resamples.
    n, p = 872, 0.89
    ks = np.arange(int(n * p - 5 * np.sqrt(n * p * (1 - p))), int(n * p + 5 * np.sqrt(n * p * (1 - p))) + 1)
    rng = np.random.default_rng(0)
    covered = []
    for k in ks:
        y = rng.permutation(np.r_[np.ones(k, int), np.zeros(n - k, int)])
        ci = bootstrap_ci(y, np.ones(n, int), seed=int(k))
        covered.append(ci["low"] <= p <= ci["high"])
    weights = binom.pmf(ks, n, p)
    assert weights.sum() > 0.999999
    coverage = float(weights @ np.array(covered))
    assert 0.93 <= coverage <= 0.97, coverage


def test_paired_bootstrap_interval_covers_the_true_difference():
    # A right on 88 %, B on 84 % of rows (both 80 %, only A 8 %, only B 4 %): true difference 0.04. An interval that
    # ignored the pairing would be ~1.4x wider (coverage ~99.5 %), one at the wrong level would miss: 400 seeded
    # data sets of 872 rows (binomial SE of the coverage 1.1 points; 1,500 sets measured 94.7 %).
    rng = np.random.default_rng(0)
    hits = []
    for i in range(400):
        y, a, b = paired_models(872, 0.80, 0.08, 0.04, rng)
        r = paired_bootstrap_diff(y, a, b, n_resamples=400, seed=i)
        hits.append(r["low"] <= 0.04 <= r["high"])
    assert 0.925 <= np.mean(hits) <= 0.975, np.mean(hits)


def test_paired_bootstrap_p_value_holds_its_size_under_the_null():
    # Equally accurate models (only A 6 %, only B 6 %): P(p < 0.05) should be 0.05 (1,500 sets measured 4.5 %).
    rng = np.random.default_rng(1)
    p = [paired_bootstrap_diff(*paired_models(300, 0.80, 0.06, 0.06, rng), n_resamples=400, seed=i)["p_value"]
         for i in range(400)]
    assert 0.02 <= np.mean(np.array(p) < 0.05) <= 0.09, np.mean(np.array(p) < 0.05)
    assert 0.4 < np.median(p) < 0.6  # roughly uniform, not piled up at 1


def test_paired_bootstrap_reports_the_difference_and_uses_bootstrap_cis_resamples():
    rng = np.random.default_rng(2)
    y, a, b = paired_models(500, 0.8, 0.1, 0.02, rng)
    r = paired_bootstrap_diff(y, a, b, n_resamples=1000, seed=5)
    assert r["difference"] == pytest.approx(r["accuracy_a"] - r["accuracy_b"]) and r["difference"] > 0.05
    assert r["low"] < r["difference"] < r["high"] and r["p_value"] < 0.01
    assert paired_bootstrap_diff(y, b, a, n_resamples=1000, seed=5)["difference"] == -r["difference"]
    # B right on every row: the resampled differences are A's resampled accuracies minus 1, the same draws
    ci = bootstrap_ci(y, a, n_resamples=1000, seed=5)
    exact = paired_bootstrap_diff(y, a, y, n_resamples=1000, seed=5)
    assert exact["low"] == pytest.approx(ci["low"] - 1) and exact["high"] == pytest.approx(ci["high"] - 1)
    same = paired_bootstrap_diff(y, a, a, n_resamples=200)
    assert same["difference"] == same["low"] == same["high"] == 0 and same["p_value"] == 1.0
    with pytest.raises(ValueError, match="equal non-zero lengths"):
        paired_bootstrap_diff([1, 0], [1], [0, 1])


# --- McNemar: a known table and the power formula ---------------------------------------------------------------

def test_mcnemar_p_value_on_a_table_computed_by_hand():
    # b = 10 rows only A right, c = 2 only B right (plus 30 both, 5 neither): exact two-sided p = 2 P(X <= 2),
    # X ~ Binomial(12, 1/2) = 2 (1 + 12 + 66) / 4096 = 0.03857
    y = np.ones(47, int)
    a = np.r_[np.ones(10), np.zeros(2), np.ones(30), np.zeros(5)].astype(int)
    b = np.r_[np.zeros(10), np.ones(2), np.ones(30), np.zeros(5)].astype(int)
    r = mcnemar(y, a, b)
    assert (r["a_only"], r["b_only"], r["both"], r["neither"]) == (10, 2, 30, 5)
    assert r["p_value"] == pytest.approx(2 * 79 / 4096) and round(r["p_value"], 4) == 0.0386


def test_min_detectable_difference_has_the_power_it_promises():
    delta = min_detectable_difference(872, 0.10)
    # Connor's (1987) n at that delta, written out: (z_0.975 sqrt(psi) + z_0.8 sqrt(psi - delta^2))^2 / delta^2
    assert (1.959964 * np.sqrt(0.10) + 0.841621 * np.sqrt(0.10 - delta ** 2)) ** 2 / delta ** 2 == pytest.approx(
        872, rel=1e-5)
    assert 0.0295 < delta < 0.0305  # ~ (z_0.975 + z_0.8) sqrt(psi / n) = 2.80 * 0.0107
    # simulated power of McNemar's exact test at that difference (scipy's binomial, as metrics.mcnemar): near 0.8
    # (the normal approximation is a little optimistic for the exact test: 0.77-0.78 measured with 20,000 sets)
    counts = np.random.default_rng(3).multinomial(872, [(0.10 + delta) / 2, (0.10 - delta) / 2, 0.90], size=4000)
    b, c = counts[:, 0], counts[:, 1]
    p = np.minimum(1.0, 2 * binom.cdf(np.minimum(b, c), b + c, 0.5))
    assert 0.74 < np.mean(p < 0.05) < 0.84
    assert min_detectable_difference(4 * 872, 0.10) < delta / 1.9  # four times the rows: about half the difference
    assert min_detectable_difference(872, 0.10, power=0.9) > delta
    with pytest.raises(ValueError, match="cannot reach power"):
        min_detectable_difference(20, 0.05)
    with pytest.raises(ValueError, match="discordant_rate"):
        min_detectable_difference(872, 0.0)


# --- ECE's noise floor --------------------------------------------------------------------------------------------

def binary_model(n: int, rng, overconfidence: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Two-class probabilities with confidence 0.5 + 0.5 Beta(3, 0.79) (mean ~0.89) and labels right with
    probability confidence - overconfidence (0: perfectly calibrated)."""
    conf = 0.5 + 0.5 * rng.beta(3, 0.79, n)
    pred = rng.integers(0, 2, n)
    probs = np.empty((n, 2))
    probs[np.arange(n), pred], probs[np.arange(n), 1 - pred] = conf, 1 - conf
    right = rng.random(n) < conf - overconfidence
    return probs, np.where(right, pred, 1 - pred)


def test_ece_noise_floor_of_a_calibrated_model_is_about_two_points():
    rng = np.random.default_rng(0)
    probs, labels = binary_model(872, rng)
    floor = ece_noise_floor(probs)
    assert 0.015 < floor["mean"] < 0.025 and floor["mean"] < floor["p95"] < 0.04
    assert floor["values"].shape == (200,) and ece_noise_floor(probs)["p95"] == floor["p95"]  # seeded
    assert expected_calibration_error(probs, labels) < floor["p95"]  # calibrated: inside the noise
    # the floor agrees with ECE's real sampling spread: 300 fresh calibrated data sets from the same generator
    fresh = [expected_calibration_error(*binary_model(872, rng)) for _ in range(300)]
    assert floor["mean"] == pytest.approx(np.mean(fresh), abs=0.003)
    assert floor["p95"] == pytest.approx(np.quantile(fresh, 0.95), abs=0.005)
    fixed = ece_noise_floor(probs, resample_rows=False)
    assert fixed["mean"] == pytest.approx(floor["mean"], abs=0.003)
    # twelve points over-confident: far above the floor
    bad_probs, bad_labels = binary_model(872, rng, overconfidence=0.12)
    assert expected_calibration_error(bad_probs, bad_labels) > 3 * ece_noise_floor(bad_probs)["p95"]
    # more rows, lower floor (~1 / sqrt(n))
    assert ece_noise_floor(binary_model(8720, rng)[0])["mean"] < floor["mean"] / 2


def test_bins_reached_counts_occupied_bins():
    rng = np.random.default_rng(0)
    p = rng.random(5000)
    two = np.stack([p, 1 - p], axis=1)
    assert bins_reached(two) == 8  # confidence in [0.5, 1]: bins 7..14 of 15, (7/15, 8/15] holding 0.5
    assert bins_reached(np.array([[0.5, 0.5]])) == 1 and bins_reached(two, n_bins=10) == 5
    three = rng.dirichlet([1, 1, 1], 5000)
    assert bins_reached(three) == 10  # confidence > 1/3: bins 5..14 (bin 4, (4/15, 5/15], needs exactly 1/3)
    assert bins_reached(np.full((1, 3), 1 / 3)) == 1
    with pytest.raises(ValueError, match="shape"):
        bins_reached(p)


# --- slices: negation cues, Fisher, Cochran-Mantel-Haenszel -----------------------------------------------------

@pytest.mark.parametrize("text", ["it does n't work", "ca n't stop", "it is n't funny", "nothing happens",
                                  "nobody cares", "none of it", "neither funny nor sad", "going nowhere",
                                  "without charm", "hardly a film", "barely there", "scarcely watchable",
                                  "i cannot recommend it", "it lacks bite", "lacking wit", "a lack of ideas",
                                  "I don\u2019t know"])
def test_fuller_negation_cues(text):
    assert has_negation(text, negation_cues())


@pytest.mark.parametrize("text", ["a knot of noble notions", "nonetheless , notable", "north by northwest",
                                  "lackluster", "barelyfunny"])
def test_fuller_negation_cues_are_whole_words(text):
    assert not has_negation(text, negation_cues())


def test_default_negation_cues_are_unchanged_and_the_full_list_adds_to_them(sst2_dir):
    assert not has_negation("nothing special , without charm")  # the default is still not / no / never / n't
    assert has_negation("nothing special", ["nothing"]) and not has_negation("it is n't", ["nothing"])
    with open(sst2_dir / "dev.tsv", encoding="utf-8") as f:
        dev = [r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    old = [has_negation(s) for s in dev]
    new = [has_negation(s, negation_cues()) for s in dev]
    assert sum(old) == 164  # the slice notebook 05 reports
    assert all(n for o, n in zip(old, new, strict=True) if o) and sum(new) > sum(old)
    with pytest.raises(ValueError, match="letters-only"):
        has_negation("x", ["no way"])


def test_slice_test_is_fishers_exact_test():
    # the lady tasting tea: 3 of 4 cups right each way, two-sided p = 34 / 70
    correct, in_slice = rows_from_table([[3, 1], [1, 3]])
    r = slice_test(correct, in_slice)
    assert r["p_value"] == pytest.approx(34 / 70) and r["odds_ratio"] == pytest.approx(9.0)
    assert (r["accuracy_in"], r["accuracy_out"], r["n_in"], r["n_out"]) == (0.75, 0.25, 4, 4)
    # notebook 05's negation slice: 138 / 164 vs 636 / 708 right
    r = slice_test(*rows_from_table([[138, 26], [636, 72]]))
    assert r["difference"] == pytest.approx(138 / 164 - 636 / 708) and 0.04 < r["p_value"] < 0.07
    with pytest.raises(ValueError, match="inside and outside"):
        slice_test([True, False], [True, True])


def test_cmh_matches_the_textbook_rabbits_example():
    # Mantel (1963) penicillin and rabbits, the example of R's mantelhaen.test: X^2 = 3.9286, p = 0.04747 (with the
    # continuity correction); by hand: sum(a - E a) = 16 - 13 = 3, sum Var = 0.6136 + 0.7273 + 0.25 = 1.5909,
    # (3 - 0.5)^2 / 1.5909 = 3.9286; MH odds ratio = (1.5 + 2) / 0.5 = 7. Slice: injected at once; correct: cured.
    tables = [[[0, 6], [0, 5]], [[3, 3], [0, 6]], [[6, 0], [2, 4]], [[5, 1], [6, 0]], [[2, 0], [5, 0]]]
    rows = [rows_from_table(t) for t in tables]
    correct, in_slice = (np.concatenate([r[i] for r in rows]) for i in (0, 1))
    strata = np.concatenate([np.full(len(r[0]), f"level {k}") for k, r in enumerate(rows)])
    r = slice_test_stratified(correct, in_slice, strata)
    assert r["statistic"] == pytest.approx(3.9286, abs=1e-4) and r["p_value"] == pytest.approx(0.04747, abs=1e-5)
    assert r["common_odds_ratio"] == pytest.approx(7.0) and r["strata_skipped"] == 0
    assert r["strata"]["level 1"] == {"n_in": 6, "n_out": 6, "accuracy_in": 0.5, "accuracy_out": 0.0}
    assert slice_test_stratified(correct, in_slice, strata, continuity=False)["statistic"] == pytest.approx(
        9 / (0.61363636 + 0.72727273 + 0.25))


def test_cmh_removes_a_confounder_that_fisher_sees():
    # accuracy depends on length only (short 95 %, long 75 %), and the slice is mostly long sentences: the crude
    # test finds a gap (79 % vs 91 %, Fisher p = 0.003), within each length stratum there is none (X^2 = 0)
    short = rows_from_table([[19, 1], [171, 9]])  # slice 95 %, rest 95 %
    long = rows_from_table([[60, 20], [30, 10]])  # slice 75 %, rest 75 %
    correct, in_slice = np.r_[short[0], long[0]], np.r_[short[1], long[1]]
    strata = np.r_[np.zeros(200), np.ones(120)]
    r = slice_test_stratified(correct, in_slice, strata)
    assert r["crude"]["p_value"] < 0.01 and r["p_value"] == 1.0 and r["common_odds_ratio"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one stratum per row"):
        slice_test_stratified(correct, in_slice, strata[:5])
    with pytest.raises(ValueError, match="no evidence"):
        slice_test_stratified(correct, in_slice, np.arange(len(correct)))  # every stratum a single row
