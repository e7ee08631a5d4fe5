"""Held-out splits that are held out: whole documents of a corpus, whole source sentences of SST-2's phrases.

SST-2's training rows are phrases cut from the parse trees of the training sentences, so a random split of them
leaks (most held-out phrases occur inside a training phrase). `sst2_validation_split` holds out whole *root* rows
(rows that are no other row's contiguous span: the treebank's sentences, or their largest non-neutral parts) and
drops from training every row that is a span of a held-out root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .overlap import _Ids, _isin_sorted, row_hash, span_hashes, words


def heldout_key(key: str, frac: float, seed: int = 0) -> bool:
    """A stable coin for one document: True for about `frac` of keys, the same on every machine and run."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < frac


def split_documents(docs: Iterable[str], heldout_frac: float = 0.05, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, heldout) whole documents, each assigned by a stable coin on its first line (streamed once)."""
    train, held = [], []
    for doc in docs:
        (held if heldout_key(doc.split("\n", 1)[0], heldout_frac, seed) else train).append(doc)
    return train, held


@dataclass(frozen=True)
class SentenceSplit:
    """Row indices of a split of SST-2's training phrases by source sentence."""

    train: np.ndarray  # rows to train on
    validation: np.ndarray  # held-out root rows (whole sentences, like dev)
    dropped: np.ndarray  # rows that are spans of a held-out root: in neither
    roots: int  # how many rows are no other row's span

    def line(self) -> str:
        """One printable line."""
        return (f"{len(self.validation):,} validation sentences (of {self.roots:,} root rows), {len(self.train):,} "
                f"training rows, {len(self.dropped):,} rows dropped as spans of a validation sentence")


def sst2_validation_split(sentences: Sequence[str], n_validation: int, seed: int = 0) -> SentenceSplit:
    """Hold out n_validation root rows at random; drop every row that is a span of one of them."""
    to_ids = _Ids()
    rows = [to_ids(words(s)) for s in sentences]  # the words the overlap check compares
    full = np.array([row_hash(r) for r in rows], np.uint64)
    proper = np.unique(np.concatenate([span_hashes(r, proper=True) for r in rows]))
    roots = np.flatnonzero(~_isin_sorted(full, proper))
    if n_validation > len(roots):
        raise ValueError(f"n_validation={n_validation} is more than the {len(roots)} root rows.")
    val = np.sort(np.random.default_rng(seed).choice(roots, n_validation, replace=False))
    val_spans = np.unique(np.concatenate([span_hashes(rows[i]) for i in val]))
    inside = _isin_sorted(full, val_spans)
    inside[val] = False
    keep = np.ones(len(rows), bool)
    keep[val] = False
    keep &= ~inside
    return SentenceSplit(np.flatnonzero(keep), val, np.flatnonzero(inside), len(roots))


def grouped_validation_split(keys: Sequence[str], frac: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) row indices: a row goes to validation when its key (e.g. a pair's first sentence,
    lower-cased words only) hashes into `frac`, so rows that share a key never straddle the two sides."""
    from .domain_shift import norm_text

    held = np.array([heldout_key(norm_text(k), frac, seed) for k in keys], bool)
    return np.flatnonzero(~held), np.flatnonzero(held)
