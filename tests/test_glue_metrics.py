"""The hand-written GLUE and NER metrics against scikit-learn, scipy and seqeval's definition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, rankdata, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from llm_transfer.metrics import (
    accuracy,
    average_ranks,
    binary_f1,
    entity_scores,
    entity_spans,
    matthews_correlation,
    pearson,
    spearman,
    task_metrics,
)

SEEDS = [0, 1, 2, 3, 4]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_classification_metrics_equal_sklearns_on_random_labels(seed, n_classes):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.integers(0, n_classes, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, n_classes, n))  # correlated with y
    assert matthews_correlation(y, pred) == pytest.approx(matthews_corrcoef(y, pred), abs=1e-12)
    assert accuracy(y, pred) == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    if n_classes == 2:
        assert binary_f1(y, pred) == pytest.approx(f1_score(y, pred), abs=1e-12)


@pytest.mark.parametrize(
    "y, pred",
    [
        ([0, 1, 1, 0, 1], [1, 1, 1, 1, 1]),  # one class predicted for every row
        ([1, 1, 1, 1], [0, 1, 0, 1]),  # one true class only
        ([0, 0, 0], [0, 0, 0]),  # both constant
        ([0, 1, 0, 1], [1, 0, 1, 0]),  # always wrong: -1
        ([0, 1, 2, 0], [0, 1, 2, 0]),  # always right: 1
        (["a", "b", "b"], ["b", "b", "a"]),  # any label values
    ],
)
@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn's note on the all-zero case
def test_mcc_edge_cases_are_sklearns(y, pred):
    assert matthews_correlation(y, pred) == pytest.approx(matthews_corrcoef(y, pred), abs=1e-12)


def test_constant_predictions_give_mcc_zero_and_f1_edge_cases():
    assert matthews_correlation([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0
    assert binary_f1([0, 0, 0], [0, 0, 0]) == 0.0 == f1_score([0, 0, 0], [0, 0, 0], zero_division=0)
    assert binary_f1([1, 0, 1], [0, 0, 0]) == 0.0
    assert binary_f1([1, 0, 1, 1], [1, 1, 1, 0]) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    with pytest.raises(ValueError, match="equal non-zero length"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="equal non-zero length"):
        matthews_correlation([], [])


@pytest.mark.parametrize("seed", SEEDS)
def test_correlations_equal_scipys_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    gold = rng.uniform(0, 5, n)
    pred = gold + rng.normal(0, 1.5, n)
    assert pearson(gold, pred) == pytest.approx(pearsonr(gold, pred)[0], abs=1e-12)
    assert spearman(gold, pred) == pytest.approx(spearmanr(gold, pred)[0], abs=1e-12)
    tied_gold, tied_pred = np.round(gold * 5) / 5, np.round(pred)  # STS-B's scores come in fifths: many ties
    assert len(np.unique(tied_pred)) < n
    assert np.array_equal(average_ranks(tied_pred), rankdata(tied_pred, method="average"))
    assert spearman(tied_gold, tied_pred) == pytest.approx(spearmanr(tied_gold, tied_pred)[0], abs=1e-12)


def test_correlation_edge_cases():
    assert average_ranks([10, 20, 20, 30, 20]).tolist() == [1.0, 3.0, 3.0, 5.0, 3.0]  # 20s share ranks 2, 3, 4
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)  # monotone, not linear
    assert pearson([1, 2, 3, 4], [1, 4, 9, 16]) < 1.0
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(pearson([1, 2, 3], [2, 2, 2]))  # scipy: NaN (with a warning) for a constant input
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


# --- entities: seqeval's definition (default mode) -----------------------------------------------------------------

def test_entity_f1_on_seqevals_readme_example():
    # seqeval's README: f1_score(y_true, y_pred) == 0.50 for these two sentences.
    y_true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    s = entity_scores(y_true, y_pred)
    # true: MISC 3-5, PER 0-1; predicted: MISC 2-5 (wrong start), PER 0-1 (right): 1 of 2 and 1 of 2.
    assert (s["n_true"], s["n_pred"], s["n_correct"]) == (2, 2, 1)
    assert (s["precision"], s["recall"], s["f1"]) == (0.5, 0.5, 0.5)
    assert s["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert s["per_type"]["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_an_i_tag_after_o_or_another_type_starts_an_entity_as_seqeval_does():
    assert entity_spans(["I-PER", "I-PER", "O", "B-LOC", "I-ORG", "I-ORG", "B-ORG"]) == \
        [("PER", 0, 1), ("LOC", 3, 3), ("ORG", 4, 5), ("ORG", 6, 6)]
    assert entity_spans(["B-PER", "B-PER", "I-PER"]) == [("PER", 0, 0), ("PER", 1, 2)]
    assert entity_spans(["O", "O"]) == [] and entity_spans([]) == []
    # true: PER 0-1, LOC 3-4, ORG 6-6; predicted: PER 0-1 (from I-PER I-PER), LOC 3-3, ORG 4-4, ORG 6-6.
    y_true = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG"]]
    y_pred = [["I-PER", "I-PER", "O", "B-LOC", "I-ORG", "O", "B-ORG"]]
    s = entity_scores(y_true, y_pred)
    assert (s["n_true"], s["n_pred"], s["n_correct"]) == (3, 4, 2)
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))  # 4/7
    assert s["per_type"]["LOC"]["recall"] == 0.0 and s["per_type"]["ORG"]["precision"] == 0.5


def test_entities_do_not_cross_sentences_and_bad_tags_are_refused():
    s = entity_scores([["B-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]])
    assert s["n_true"] == 2 and s["f1"] == 1.0  # two one-token entities, not one spanning both sentences
    assert entity_scores([["O"]], [["O"]])["f1"] == 0.0  # nothing to find: 0, as seqeval's zero_division
    with pytest.raises(ValueError, match="tag 'E-PER' is not IOB2"):
        entity_spans(["B-PER", "E-PER"])
    with pytest.raises(ValueError, match="sentence 0: 1 predicted tags for 2 tokens"):
        entity_scores([["O", "O"]], [["O"]])


# --- GLUE's metrics per task -------------------------------------------------------------------------------------

def test_task_metrics_give_each_tasks_glue_metrics():
    y, pred = [0, 1, 1, 0, 1, 1], [0, 1, 0, 0, 1, 1]
    assert task_metrics("cola", pred, y) == {"matthews_correlation": pytest.approx(matthews_corrcoef(y, pred)),
                                             "score": pytest.approx(matthews_corrcoef(y, pred))}
    mrpc = task_metrics("mrpc", pred, y)
    assert mrpc["f1"] == pytest.approx(f1_score(y, pred)) and mrpc["accuracy"] == pytest.approx(5 / 6)
    assert mrpc["score"] == pytest.approx((mrpc["f1"] + 5 / 6) / 2)
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [1.0, 0.0], [3.0, 1.0], [0.0, 4.0], [-1.0, 1.0]])  # argmax = pred
    assert task_metrics("rte", logits, y) == {"accuracy": pytest.approx(5 / 6), "score": pytest.approx(5 / 6)}
    gold = [0.0, 1.2, 2.5, 3.8, 5.0]
    out = np.array([[0.3], [1.0], [2.9], [3.1], [4.6]])  # a 1-unit head's (n, 1) output
    stsb = task_metrics("STS-B", out, gold)
    assert set(stsb) == {"pearson", "spearman", "score"}
    assert stsb["pearson"] == pytest.approx(pearsonr(gold, out[:, 0])[0]) and stsb["spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 of 2 labels are -1, GLUE's hidden test labels"):
        task_metrics("sst2", [0, 1], [-1, -1])
