"""Baselines that learn from labels, settings chosen on a validation split: TF-IDF + logistic regression, and a
bag of word pieces trained from random weights (no pretraining)."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

# The grid: regularisation strength and word n-gram range (Wang & Manning 2012 found bigrams help sentiment).
TFIDF_GRID = {"C": [0.25, 1.0, 4.0, 16.0, 64.0], "ngram_range": [(1, 1), (1, 2)]}


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


class BagOfPieces(torch.nn.Module):
    """A from-scratch classifier: the mean of learnt word-piece vectors into a linear layer (fastText's shape)."""

    def __init__(self, vocab_size: int, dim: int = 64, num_labels: int = 2):
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(vocab_size, dim, mode="mean", sparse=True)  # a step touches its rows only
        self.out = torch.nn.Linear(dim, num_labels)

    def forward(self, flat_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.out(self.bag(flat_ids, offsets))


def _bags(ids: Sequence[Sequence[int]], rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' id lists as EmbeddingBag's (flat ids, offsets)."""
    lists = [ids[i] for i in rows]
    offsets = torch.tensor(np.cumsum([0] + [len(s) for s in lists[:-1]]), dtype=torch.long)
    return torch.tensor([t for s in lists for t in s], dtype=torch.long), offsets


def _bag_accuracy(model: BagOfPieces, bags: tuple[torch.Tensor, torch.Tensor], labels: np.ndarray) -> float:
    """Accuracy of a BagOfPieces on pre-built bags."""
    with torch.no_grad():
        return float((model(*bags).argmax(-1).numpy() == labels).mean())


@dataclass
class BagResult:
    """A trained BagOfPieces, the learning rate and step chosen on validation, and its validation accuracy."""

    model: BagOfPieces
    params: dict
    validation_accuracy: float

    def predict(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Predicted labels of tokenized rows."""
        with torch.no_grad():
            return self.model(*_bags(ids, np.arange(len(ids)))).argmax(-1).numpy()

    def accuracy(self, ids: Sequence[Sequence[int]], labels: Sequence[int]) -> float:
        """Accuracy on tokenized rows."""
        return float((self.predict(ids) == np.asarray(labels)).mean())


def train_bag_of_pieces(train_ids: Sequence[Sequence[int]], train_labels: Sequence[int],
                        val_ids: Sequence[Sequence[int]], val_labels: Sequence[int], vocab_size: int,
                        lrs: Sequence[float] = (1e-2, 3e-2, 1e-1), steps: int = 800, eval_every: int = 100,
                        batch_size: int = 32, dim: int = 64, seed: int = 0) -> BagResult:
    """Train from random weights at each learning rate (Adam); keep the rate and step best on validation."""
    y, yv = np.asarray(train_labels), np.asarray(val_labels)
    val_bags = _bags(val_ids, np.arange(len(val_ids)))
    best = None
    for lr in lrs:
        torch.manual_seed(seed)
        model = BagOfPieces(vocab_size, dim, int(max(y.max(), yv.max()) + 1))
        opts = [torch.optim.SparseAdam(model.bag.parameters(), lr=lr), torch.optim.Adam(model.out.parameters(), lr=lr)]
        rng = np.random.default_rng(seed)
        order, at = rng.permutation(len(y)), 0
        for step in range(1, steps + 1):
            if at + batch_size > len(order):
                order, at = rng.permutation(len(y)), 0
            rows = order[at:at + batch_size]
            at += batch_size
            loss = torch.nn.functional.cross_entropy(model(*_bags(train_ids, rows)), torch.as_tensor(y[rows]))
            for opt in opts:
                opt.zero_grad()
            loss.backward()
            for opt in opts:
                opt.step()
            if step % eval_every == 0 or step == steps:
                acc = _bag_accuracy(model, val_bags, yv)
                if best is None or acc > best[2]:
                    best = (copy.deepcopy(model), {"lr": lr, "step": step, "steps": steps}, acc)
    return BagResult(*best)


# GLUE tasks: TF-IDF of each sentence (and, for pairs, their cosine similarity) into a linear model


@dataclass
class TaskBaseline:
    """A fitted TF-IDF baseline of a GLUE task: the setting it chose and every setting's validation score."""

    task: str
    vectorizer: TfidfVectorizer
    model: object
    params: dict
    validation_score: float
    grid: list[tuple[dict, float]]

    def features(self, ds):
        """The rows' features: TF-IDF of each text column side by side, then their cosine for a pair."""
        from scipy.sparse import csr_matrix, hstack

        from .glue import get_task

        cols = [self.vectorizer.transform(list(ds[c])) for c in get_task(self.task).text_columns]
        if len(cols) == 2:  # rows are L2-normalised, so the row-wise dot product is the cosine
            cols.append(csr_matrix(np.asarray(cols[0].multiply(cols[1]).sum(axis=1))))
        return hstack(cols).tocsr()

    def predict(self, ds) -> np.ndarray:
        """Class ids, or STS-B scores."""
        return self.model.predict(self.features(ds))


def tfidf_task(task: str, train, validation, grid: Sequence[float] = (0.25, 1.0, 4.0, 16.0), seed: int = 0
               ) -> TaskBaseline:
    """TF-IDF (word uni- and bigrams, fit on the training texts) into a logistic regression (ridge regression for
    STS-B); C (1 / alpha) chosen by the task's GLUE score on `validation`, never on the reported split."""
    from sklearn.linear_model import Ridge

    from .glue import get_task
    from .metrics import task_metrics

    t = get_task(task)
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
    vec.fit([x for c in t.text_columns for x in train[c]])
    base = TaskBaseline(task, vec, None, {}, float("-inf"), [])
    x_train, x_val = base.features(train), base.features(validation)
    for C in grid:
        model = (Ridge(alpha=1.0 / C) if t.is_regression else
                 LogisticRegression(C=C, max_iter=2000, random_state=seed)).fit(x_train, list(train["label"]))
        score = task_metrics(task, model.predict(x_val), np.asarray(validation["label"]))["score"]
        base.grid.append(({"C": C}, score))
        if score > base.validation_score:
            base.model, base.params, base.validation_score = model, {"C": C}, score
    return base
