"""Membership inference (Yeom et al. 2018) and canary exposure (Carlini et al. 2019)."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from llm_transfer.privacy import (
    candidate_space,
    dedup_documents,
    exposure,
    exposure_skewnorm,
    insert_canaries,
    make_canaries,
    match_lengths,
    membership_auc,
)


def test_match_lengths():
    """Equal length histograms on both sides, valid distinct indices, lengths only one side has dropped."""
    rng = np.random.default_rng(0)
    members, nonmembers = rng.integers(1, 8, 300), rng.integers(4, 15, 200)
    im, inn = match_lengths(members, nonmembers, seed=3)
    assert len(im) == len(inn) > 0
    assert len(set(im)) == len(im) and len(set(inn)) == len(inn)
    assert im.min() >= 0 and im.max() < len(members) and inn.min() >= 0 and inn.max() < len(nonmembers)
    assert Counter(members[im].tolist()) == Counter(nonmembers[inn].tolist())
    for v in range(4, 8):
        assert (members[im] == v).sum() == min((members == v).sum(), (nonmembers == v).sum())
    assert np.array_equal(match_lengths(members, nonmembers, seed=3)[0], im)
    assert [len(x) for x in match_lengths([1, 2], [3])] == [0, 0]


def test_auc_matches_sklearn_with_ties():
    """The hand-computed Mann-Whitney AUC equals roc_auc_score on -loss, ties included."""
    rng = np.random.default_rng(0)
    for n_m, n_n in ((50, 70), (7, 3), (200, 200)):
        member = rng.integers(0, 10, n_m).astype(float)  # few values: many ties
        nonmember = rng.integers(2, 12, n_n).astype(float)
        out = membership_auc(member, nonmember, n_resamples=100)
        labels = np.r_[np.ones(n_m), np.zeros(n_n)]
        assert abs(out["auc"] - roc_auc_score(labels, -np.r_[member, nonmember])) < 1e-12
        assert out["low"] <= out["auc"] <= out["high"]
        assert (out["n_members"], out["n_nonmembers"]) == (n_m, n_n)
        assert -1 <= out["advantage"] <= 1


def test_auc_extremes():
    """About 0.5 when members and non-members share a distribution; 1.0 when every member loss is lower."""
    rng = np.random.default_rng(1)
    same = membership_auc(rng.normal(size=2000), rng.normal(size=2000), n_resamples=200)
    assert abs(same["auc"] - 0.5) < 0.03 and same["low"] < 0.5 < same["high"]
    assert abs(same["advantage"]) < 0.06
    sep = membership_auc(rng.uniform(0, 1, 100), rng.uniform(2, 3, 100), n_resamples=200)
    assert sep["auc"] == sep["low"] == sep["high"] == 1.0 and sep["advantage"] > 0


def test_advantage_by_hand():
    """Threshold = mean member loss 2.0: TPR = 2/4 (1, 1.5), FPR = 1/3 (0.5), advantage = 1/6."""
    out = membership_auc([1.0, 1.5, 2.5, 3.0], [0.5, 2.0, 4.0], n_resamples=50)
    assert out["advantage"] == pytest.approx(2 / 4 - 1 / 3)
    with pytest.raises(ValueError):
        membership_auc([], [1.0])


def test_make_canaries():
    """Distinct, prefixed, one space-separated digit per token, reproducible."""
    canaries = make_canaries(50, seed=2)
    assert len(set(canaries)) == 50 and canaries == make_canaries(50, seed=2)
    assert all(re.fullmatch(r"my secret number is( \d){6}", c) for c in canaries)
    assert all(re.fullmatch(r"pin( \d){3}", c) for c in make_canaries(1000, digits=3, prefix="pin"))
    with pytest.raises(ValueError):
        make_canaries(11, digits=1)


def test_insert_and_dedup():
    """Each canary appears repeats[i] times, docs keep their order, and dedup leaves each canary once."""
    docs = [f"document {i} text" for i in range(100)] + ["document  0 text"]  # a whitespace-variant duplicate
    canaries, repeats = make_canaries(4, seed=1), [1, 4, 16, 64]
    out = insert_canaries(docs, canaries, repeats, seed=5)
    assert len(out) == len(docs) + sum(repeats)
    counts = Counter(out)
    assert [counts[c] for c in canaries] == repeats
    assert [d for d in out if d not in set(canaries)] == docs
    assert out != docs + [c for c, r in zip(canaries, repeats, strict=True) for _ in range(r)]  # not all at the end
    deduped = dedup_documents(out)
    assert all(Counter(deduped)[c] == 1 for c in canaries)
    assert [d for d in deduped if d not in set(canaries)] == docs[:-1]
    with pytest.raises(ValueError):
        insert_canaries(docs, canaries, [1, 2])


def test_candidate_space():
    """Candidates share the format, are distinct, and avoid exclude."""
    canaries = make_canaries(5, digits=3)
    cands = candidate_space("my secret number is", 3, 995, seed=0, exclude=canaries)
    assert len(set(cands)) == 995 and not set(cands) & set(canaries)
    assert all(re.fullmatch(r"my secret number is( \d){3}", c) for c in cands)
    with pytest.raises(ValueError):
        candidate_space("my secret number is", 3, 996, seed=0, exclude=canaries)


def test_exposure_sampled():
    """Below every candidate: exactly log2|R|; above every candidate: log2|R| - log2(1 + |R|); monotone between."""
    rng = np.random.default_rng(0)
    cands, size = rng.normal(5, 1, 1000), 10**6
    assert exposure(cands.min() - 1, cands, size) == np.log2(size)
    assert exposure(cands.max() + 1, cands, size) == pytest.approx(np.log2(size) - np.log2(1 + size))
    values = [exposure(s, cands, size) for s in np.linspace(1, 9, 50)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_exposure_skewnorm():
    """The skew-normal extrapolation agrees with the sampled estimate for a middle score and extends past it."""
    rng = np.random.default_rng(0)
    cands, size = rng.normal(0, 1, 5000), 10**6
    for score in (-1.0, 0.0):
        assert exposure_skewnorm(score, cands, size) == pytest.approx(exposure(score, cands, size), abs=0.15)
    assert exposure_skewnorm(-5.0, cands, size) > exposure_skewnorm(-3.0, cands, size) > exposure(-1.0, cands, size)
    assert exposure_skewnorm(-100.0, cands, size) == pytest.approx(np.log2(size))
