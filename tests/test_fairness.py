"""The EEC-style counterfactual corpus and the paired group gap."""

from __future__ import annotations

import numpy as np
import pytest

from llm_transfer.fairness import (
    COLUMNS,
    EMOTIONS,
    NAMES,
    NOUN_PHRASES,
    OBJECT_FORMS,
    SITUATION_WORDS,
    STATE_WORDS,
    TEMPLATES,
    build_eec,
    group_gap,
)


@pytest.fixture(scope="module")
def eec():
    """The generated corpus."""
    return build_eec()


def test_sizes_and_columns(eec):
    """Row counts follow from the constants: 8,640 sentences, as in the published EEC."""
    kinds = [kind for _, kind in TEMPLATES]
    assert kinds.count("state") == 4 and kinds.count("situation") == 3 and kinds.count("neutral") == 4
    fillers = sum(20 if kind != "neutral" else 1 for kind in kinds)  # 4 emotions x 5 words per emotion template
    assert sum(len(v) for v in STATE_WORDS.values()) == sum(len(v) for v in SITUATION_WORDS.values()) == 20
    n_np, n_names = 2 * len(NOUN_PHRASES), sum(len(v) for v in NAMES.values())
    assert (n_np, n_names) == (20, 40)
    assert len(eec) == fillers * (n_np + n_names) == 8640
    assert tuple(eec.columns) == COLUMNS
    assert (eec["axis"] == "gender_np").sum() == fillers * n_np
    assert set(eec["emotion"]) == {*EMOTIONS, "none"}
    assert set(eec["template"]) == set(range(1, 12))
    assert (eec["word"] == "").sum() == 4 * (n_np + n_names)
    assert set(eec.loc[eec["axis"] == "race", "group"]) == {"African-American", "European-American"}
    assert build_eec().equals(eec)  # deterministic


def test_sentences(eec):
    """Capitalised, no duplicates, pronouns in object position, articles right."""
    assert not eec["sentence"].duplicated().any()
    assert eec["sentence"].str[0].str.isupper().all()
    for sentence in ("She feels angry.", "He feels angry.", "I made her feel happy.", "I saw him in the market.",
                     "My sister made me feel sad.", "Ebony found themselves in an amazing situation.",
                     "Ryan found themselves in a grim situation.", "The conversation with Jack was funny."):
        assert sentence in set(eec["sentence"])


def _mask(sentence: str, person: str) -> str:
    """The sentence with the person (subject or object form, any first-letter case) replaced by a placeholder."""
    padded = f" {sentence[:-1]} "
    for form in (person, OBJECT_FORMS.get(person, person), person[0].upper() + person[1:]):
        if f" {form} " in padded:
            return padded.replace(f" {form} ", " <P> ", 1).strip()
    raise AssertionError(f"{person!r} not in {sentence!r}")


def test_gender_np_keys(eec):
    """Each noun-phrase key is one female and one male sentence, identical up to the person words."""
    sub = eec[eec["axis"] == "gender_np"]
    for _, rows in sub.groupby("key"):
        assert sorted(rows["group"]) == ["female", "male"]
        assert rows["template"].nunique() == rows["word"].nunique() == 1
        masked = {_mask(s, p) for s, p in zip(rows["sentence"], rows["person"], strict=True)}
        assert len(masked) == 1
    assert sub["key"].nunique() == len(sub) // 2


def test_race_keys(eec):
    """Each race key is 10 African-American and 10 European-American names of one gender, same template and word."""
    sub = eec[eec["axis"] == "race"]
    for _, rows in sub.groupby("key"):
        assert rows["group"].value_counts().to_dict() == {"African-American": 10, "European-American": 10}
        assert rows["gender"].nunique() == rows["template"].nunique() == rows["word"].nunique() == 1
        assert len({_mask(s, p) for s, p in zip(rows["sentence"], rows["person"], strict=True)}) == 1
    assert sub["key"].nunique() == len(sub) // 20


def test_constant_gap(eec):
    """0.1 on group_a rows and 0 elsewhere: the gap is 0.1 with a degenerate interval."""
    scores = np.where(eec["group"] == "female", 0.1, 0.0)
    out = group_gap(eec, scores, "gender_np", "female", "male", n_resamples=200)
    assert out["gap"] == pytest.approx(0.1) and out["low"] == pytest.approx(0.1) and out["high"] == pytest.approx(0.1)
    assert out["share_a_higher"] == 1.0 and out["n_keys"] == 144 * 10
    assert set(out["per_emotion"]) == {*EMOTIONS, "none"}
    assert all(v == pytest.approx(0.1) for v in out["per_emotion"].values())
    race = group_gap(eec, np.where(eec["group"] == "African-American", 0.1, 0.0), "race", "African-American",
                     "European-American", n_resamples=200)
    assert race["gap"] == pytest.approx(0.1) and race["n_keys"] == 144 * 2


def test_planted_gap(eec):
    """A planted gap of 0.05 under noise is detected: the interval excludes 0 and contains 0.05."""
    rng = np.random.default_rng(1)
    scores = 0.5 + 0.05 * (eec["group"] == "male").to_numpy() + rng.normal(0, 0.1, len(eec))
    out = group_gap(eec, scores, "gender_np", "male", "female")
    assert 0 < out["low"] <= 0.05 <= out["high"]
    assert out["gap"] == pytest.approx(0.05, abs=0.01) and out["share_a_higher"] > 0.5


def test_errors(eec):
    """Mismatched lengths, a missing group and an unknown axis raise."""
    with pytest.raises(ValueError, match="aligned"):
        group_gap(eec, np.zeros(len(eec) - 1), "gender_np", "female", "male")
    with pytest.raises(ValueError, match="lack"):
        group_gap(eec.iloc[1:], np.zeros(len(eec) - 1), "gender_np", "female", "male")
    with pytest.raises(ValueError, match="no rows"):
        group_gap(eec, np.zeros(len(eec)), "age", "young", "old")
