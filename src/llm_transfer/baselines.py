"""Baselines that learn from labels: TF-IDF + logistic regression, its settings chosen on a validation split."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

# The grid: regularisation strength and word n-gram range (Wang & Manning 2012 found bigrams help sentiment).
TFIDF_GRID = {"C": [0.25, 1.0, 4.0, 16.0], "ngram_range": [(1, 1), (1, 2)]}


def tfidf_pipeline(C: float = 1.0, ngram_range: tuple[int, int] = (1, 2), seed: int = 0) -> Pipeline:
    """TF-IDF (sublinear term frequencies) into a logistic regression."""
    return Pipeline([
        ("tfidf", TfidfVectorizer(ngram_range=ngram_range, sublinear_tf=True, min_df=1, lowercase=True)),
        ("logreg", LogisticRegression(C=C, max_iter=2000, random_state=seed)),
    ])


@dataclass
class TfidfResult:
    """A fitted TF-IDF baseline, the settings it chose and every setting's validation accuracy."""

    model: Pipeline
    params: dict
    validation_accuracy: float
    grid: list[tuple[dict, float]]

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Predicted labels."""
        return self.model.predict(list(texts))

    def accuracy(self, texts: Sequence[str], labels: Sequence[int]) -> float:
        """Accuracy on labelled texts."""
        return float(np.mean(self.predict(texts) == np.asarray(labels)))


def tfidf_logreg(train_texts: Sequence[str], train_labels: Sequence[int], val_texts: Sequence[str],
                 val_labels: Sequence[int], grid: dict | None = None, seed: int = 0) -> TfidfResult:
    """Fit every grid setting on the training rows, keep the best on validation (never on the reported split)."""
    grid = grid or TFIDF_GRID
    if len(set(train_labels)) < 2:
        raise ValueError("the training rows hold one label only; a classifier needs both.")
    scores, best = [], None
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        model = tfidf_pipeline(seed=seed, **params).fit(list(train_texts), list(train_labels))
        acc = float(np.mean(model.predict(list(val_texts)) == np.asarray(val_labels)))
        scores.append((params, acc))
        if best is None or acc > best[2]:
            best = (model, params, acc)
    return TfidfResult(best[0], best[1], best[2], scores)
