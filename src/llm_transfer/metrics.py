"""Classification metrics (scikit-learn does the arithmetic) and simple baselines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score


def majority_baseline(train_labels: Sequence[int], eval_labels: Sequence[int]) -> dict:
    """Accuracy of always predicting the training split's most frequent label."""
    majority = int(np.bincount(np.asarray(train_labels)).argmax())
    return {"label": majority, "accuracy": float(accuracy_score(eval_labels, [majority] * len(eval_labels)))}
