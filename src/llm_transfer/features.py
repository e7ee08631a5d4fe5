"""Frozen features: mean-pooled sentence embeddings of an encoder, cached on disk, and a linear probe."""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .batching import sorted_batches


def mean_pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors of each row over its real tokens only (attention_mask == 1)."""
    if last_hidden.dim() != 3 or attention_mask.shape != last_hidden.shape[:2]:
        raise ValueError(f"mean_pool: last_hidden has shape {tuple(last_hidden.shape)} and attention_mask "
                         f"{tuple(attention_mask.shape)}; expected (batch, seq, hidden) and (batch, seq).")
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
    return (last_hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


@torch.no_grad()
def embed_sentences(model: torch.nn.Module, tokenizer, sentences: Sequence[str], batch_size: int = 64,
                    max_length: int = 128, device: str | torch.device | None = None) -> np.ndarray:
    """Sentence embeddings (n, hidden) in input order: length-sorted batches, mean pooling, no gradients.

    `model` is a 🤗 encoder (AutoModel) or one of the series' small LMs (anything with `.hidden(ids, mask)`).
    """
    sentences = list(sentences)
    if not sentences:
        raise ValueError("embed_sentences: got no sentences; pass a non-empty list of strings.")
    bad = [i for i, s in enumerate(sentences) if not isinstance(s, str)]
    if bad:
        raise TypeError(f"embed_sentences: row {bad[0]} is {type(sentences[bad[0]]).__name__}, not str; "
                        "pass the sentence column (e.g. ds['sentence']).")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval().to(device)
    ids = tokenizer(sentences, truncation=True, max_length=max_length)["input_ids"]
    out: np.ndarray | None = None
    try:
        for rows in sorted_batches([len(x) for x in ids], batch_size):
            batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            # a 🤗 encoder returns last_hidden_state; the series' TinyGPT / LSTM expose .hidden(ids, mask)
            hidden = (model.hidden(batch["input_ids"], batch["attention_mask"]) if hasattr(model, "hidden")
                      else model(**batch).last_hidden_state)
            pooled = mean_pool(hidden, batch["attention_mask"]).float().cpu().numpy()
            if out is None:
                out = np.empty((len(sentences), pooled.shape[1]), dtype=np.float32)
            out[rows] = pooled  # put each row back where it came from
    finally:
        model.train(was_training)
    return out


def cache_name(model_name: str, variant: str, split: str, n_rows: int, seed: int) -> str:
    """A file name for one embedding matrix, keyed by model, weights variant, split, row count and seed."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(model_name)).strip("_")[-60:] or "model"
    return f"{slug}-{variant}-{split}-n{n_rows}-seed{seed}.npz"


def sentences_key(sentences: Sequence[str]) -> str:
    """SHA-256 of the sentences in order: a cache made for other rows (or another order) is never reused."""
    h = hashlib.sha256()
    for s in sentences:
        h.update(s.encode("utf-8") + b"\x00")
    return h.hexdigest()


def load_or_embed(path: str | os.PathLike, model: torch.nn.Module | None, tokenizer, sentences: Sequence[str],
                  **embed_kwargs) -> tuple[np.ndarray, bool]:
    """Reuse the embeddings cached at path when they match these sentences and this encoder, else compute them.

    Returns (embeddings, reused). The cache records the SHA-256 of the encoder's weights (identity.state_sha256):
    another model, or other random weights, under the same file name is recomputed. `model` may be None only when
    the cache is known to be present (its weights are then not checked).
    """
    from .identity import state_sha256

    path = Path(path)
    sentences = list(sentences)
    key = sentences_key(sentences)
    weights = state_sha256(model) if model is not None else None
    if path.is_file():
        try:
            with np.load(path) as z:
                same_model = weights is None or ("weights" in z.files and str(z["weights"]) == weights)
                if str(z["key"]) == key and len(z["embeddings"]) == len(sentences) and same_model:
                    return z["embeddings"], True
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # an unreadable or foreign file counts as no cache: it is recomputed and overwritten
    if model is None:
        raise FileNotFoundError(f"{path}: no cached embeddings for these sentences; pass the encoder so they "
                                "can be computed.")
    emb = embed_sentences(model, tokenizer, sentences, **embed_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, embeddings=emb, key=np.array(key), weights=np.array(weights or state_sha256(model)))
    os.replace(tmp, path)  # a half-written cache never looks complete
    return emb, False


def train_probe(train_x: np.ndarray, train_y: Sequence[int], eval_x: np.ndarray, eval_y: Sequence[int],
                c: float = 1.0, max_iter: int = 2000, seed: int = 0) -> dict:
    """Fit standardise + logistic regression on frozen features; return eval/train accuracy and the probe."""
    train_x, eval_x = np.asarray(train_x), np.asarray(eval_x)
    train_y, eval_y = np.asarray(train_y), np.asarray(eval_y)
    for name, x, y in (("train", train_x, train_y), ("eval", eval_x, eval_y)):
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"train_probe: {name} features have shape {x.shape} and {len(y)} labels; "
                             "expected a 2-D (rows, features) array with one label per row.")
    if train_x.shape[1] != eval_x.shape[1]:
        raise ValueError(f"train_probe: train has {train_x.shape[1]} features, eval {eval_x.shape[1]}; "
                         "embed both splits with the same encoder.")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))
    probe.fit(train_x, train_y)
    return {
        "accuracy": float(accuracy_score(eval_y, probe.predict(eval_x))),
        "train_accuracy": float(accuracy_score(train_y, probe.predict(train_x))),
        "n_train": int(len(train_y)),
        "n_eval": int(len(eval_y)),
        "probe": probe,
    }


def probe_label_curve(train_x: np.ndarray, train_y: Sequence[int], eval_x: np.ndarray, eval_y: Sequence[int],
                      sizes: Sequence[int], draws: int = 5, seed: int = 0) -> dict[int, list[float]]:
    """Probe accuracy for each training-set size n, over `draws` random n-row subsets (all rows: one draw)."""
    train_x, train_y = np.asarray(train_x), np.asarray(train_y)
    if draws < 1 or any(n < 2 or n > len(train_y) for n in sizes):
        raise ValueError(f"probe_label_curve: need draws >= 1 and sizes in [2, {len(train_y)}], "
                         f"got draws={draws}, sizes={list(sizes)}.")
    rng = np.random.default_rng(seed)
    curve: dict[int, list[float]] = {}
    for n in sizes:
        subsets = [np.arange(n)] if n == len(train_y) else [rng.permutation(len(train_y))[:n] for _ in range(draws)]
        curve[int(n)] = [train_probe(train_x[i], train_y[i], eval_x, eval_y, seed=seed)["accuracy"]
                         for i in subsets]
    return curve
