"""Is held-out text really held out? Whole-sentence and long n-gram matches between training and held-out text.

Texts are compared as normalised words (lower case, clitics split off the way SST's tokenizer splits them, punctuation
dropped), so "It doesn't work." and SST's "it does n't work ." are the same words: it, does, nt, work.
A held-out text *overlaps as a whole* when every one of its n-grams occurs in training text (n words or more) or,
shorter than n words, when it equals a whole training text (or, with ``short_spans=True``, occurs inside one: worth
it for short-phrase corpora such as SST-2's training rows, too big for Wikipedia); it *shares an n-gram* when any
one of its n-grams occurs in training text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

_NT = re.compile(r"n't\b")
_CLITIC = re.compile(r"'(s|re|ve|ll|d|m)\b")
_WORD = re.compile(r"[^\W_]+")
_BASE = np.uint64(1_000_003)


def words(text: str) -> list[str]:
    """Normalised words: lower case, clitics split off as SST splits them (does n't, film 's), punctuation dropped."""
    text = _CLITIC.sub(r" '\1", _NT.sub(" n't", text.lower().replace("\u2019", "'")))
    return _WORD.findall(text.replace("'", ""))


class _Ids:
    """Word -> integer id, growing as new words arrive (ids start at 1; 0 never names a word)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def __call__(self, ws: Sequence[str], grow: bool = True) -> np.ndarray:
        if grow:
            return np.fromiter((self.ids.setdefault(w, len(self.ids) + 1) for w in ws), np.uint64, len(ws))
        return np.fromiter((self.ids.get(w, 0) for w in ws), np.uint64, len(ws))


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit polynomial hash of every run of n consecutive ids (wrapping arithmetic); empty when fewer than n."""
    if len(ids) < n:
        return np.empty(0, np.uint64)
    h = np.zeros(len(ids) - n + 1, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _BASE + ids[j: len(ids) - n + 1 + j]
    return h


_INV_BASE = np.uint64(pow(int(_BASE), -1, 2**64))  # _BASE is odd, so it has an inverse modulo 2^64
_POWERS: dict[str, np.ndarray] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(_BASE^k, _BASE^-k) for k < n, modulo 2^64 (grown on demand)."""
    if len(_POWERS.get("pow", ())) < n:
        size = max(n, 2 * len(_POWERS.get("pow", ())), 256)
        pw, inv = np.ones(size, np.uint64), np.ones(size, np.uint64)
        with np.errstate(over="ignore"):
            for k in range(1, size):
                pw[k], inv[k] = pw[k - 1] * _BASE, inv[k - 1] * _INV_BASE
        _POWERS.update(pow=pw, inv=inv)
    return _POWERS["pow"][:n], _POWERS["inv"][:n]


def span_hashes(ids: np.ndarray, proper: bool = False, max_width: int | None = None) -> np.ndarray:
    """ngram_hashes of every contiguous run of ids, all lengths at once (proper=True: not the whole row; max_width:
    no run longer), in the order of span_widths(len(ids), proper, max_width).

    From prefix hashes P (P[j] = hash of ids[:j]): the run ids[i:j] hashes to P[j] - P[i] * _BASE^(j - i),
    all in wrapping 64-bit arithmetic, so the values equal ngram_hashes(ids, j - i) exactly.
    """
    n = len(ids)
    if n == 0:
        return np.empty(0, np.uint64)
    pw, inv = _powers(n + 1)
    prefix = np.zeros(n + 1, np.uint64)
    i, j, width = _spans(n, proper, max_width)
    with np.errstate(over="ignore"):
        prefix[1:] = np.cumsum(ids.astype(np.uint64) * inv[:n], dtype=np.uint64) * pw[:n]  # B^(j-1) sum ids[t] B^-t
        return prefix[j] - prefix[i] * pw[width]


@functools.lru_cache(maxsize=1024)
def _spans(n: int, proper: bool, max_width: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, end - start) of every run of a row of n ids (proper=True: not the whole row)."""
    i, j = np.triu_indices(n + 1, k=1)
    top = min(n - 1 if proper else n, n if max_width is None else max_width)
    keep = (j - i) <= top
    return i[keep], j[keep], (j - i)[keep]


def span_widths(n: int, proper: bool = False, max_width: int | None = None) -> np.ndarray:
    """The length of each run span_hashes returns for a row of n ids."""
    return _spans(n, proper, max_width)[2] if n else np.empty(0, np.int64)


def row_hash(ids: np.ndarray) -> np.uint64:
    """ngram_hashes(ids, len(ids))[0], the whole row's hash, in a few array operations (0 for an empty row)."""
    n = len(ids)
    if n == 0:
        return np.uint64(0)
    pw, inv = _powers(n)
    with np.errstate(over="ignore"):
        return np.sum(ids.astype(np.uint64) * inv[:n], dtype=np.uint64) * pw[n - 1]


def _isin_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """values[i] in sorted_set, for a sorted array of distinct hashes (binary search, no re-sorting)."""
    if len(sorted_set) == 0:
        return np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values


@dataclass
class OverlapIndex:
    """Every n-gram (hashed) and every whole text shorter than n words of the training text."""

    n: int = 8
    short_spans: bool = False  # index every run of fewer than n words too (small corpora only)
    _ids: _Ids = field(default_factory=_Ids)
    _grams: list[np.ndarray] = field(default_factory=list)
    _short: set[tuple[str, ...]] = field(default_factory=set)
    _spans: dict[int, list[np.ndarray]] = field(default_factory=dict)
    _runs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (hashes, widths) not yet split
    texts: int = 0
    words: int = 0

    def add(self, texts: Iterable[str]) -> OverlapIndex:
        """Index more training texts (streamed: only their hashes are kept)."""
        batch = []
        for text in texts:
            ws = words(text)
            self.texts, self.words = self.texts + 1, self.words + len(ws)
            ids = self._ids(ws)
            if len(ws) < self.n:
                self._short.add(tuple(ws))
            if self.short_spans:  # every run shorter than n words, by length (split apart below)
                self._runs.append((span_hashes(ids, max_width=self.n - 1), span_widths(len(ids), max_width=self.n - 1)))
            batch.append(ngram_hashes(ids, self.n))
            if len(batch) >= 4096:
                self._grams.append(np.unique(np.concatenate(batch)))
                batch = []
        if batch:
            self._grams.append(np.unique(np.concatenate(batch)))
        if len(self._grams) > 1:
            self._grams = [np.unique(np.concatenate(self._grams))]
        if self._runs:
            hashes = np.concatenate([h for h, _ in self._runs])
            widths = np.concatenate([w for _, w in self._runs])
            self._runs = []
            for k in range(1, self.n):
                self._spans.setdefault(k, []).append(hashes[widths == k])
        self._spans = {k: [np.unique(np.concatenate(v))] for k, v in self._spans.items()}
        return self

    @property
    def grams(self) -> np.ndarray:
        """The sorted distinct n-gram hashes."""
        return self._grams[0] if self._grams else np.empty(0, np.uint64)

    def check(self, heldout: Sequence[str], examples: int = 3) -> OverlapReport:
        """How much of the held-out texts occurs in the indexed training text."""
        grams = self.grams
        whole, shared, found, total, shown_whole, shown_shared = 0, 0, 0, 0, [], []
        for text in heldout:
            ws = words(text)
            if len(ws) < self.n:
                spans = self._spans.get(len(ws), [np.empty(0, np.uint64)])[0]
                inside = bool(ws) and bool(_isin_sorted(ngram_hashes(self._ids(ws, grow=False), len(ws)), spans).all())
                if tuple(ws) in self._short or inside:
                    whole += 1
                    shown_whole.append(text)
                continue
            h = ngram_hashes(self._ids(ws, grow=False), self.n)
            hit = _isin_sorted(h, grams)
            found, total = found + int(hit.sum()), total + len(h)
            if hit.all():
                whole += 1
                shown_whole.append(text)
            elif hit.any():
                shared += 1
                shown_shared.append(text)
        return OverlapReport(self.n, len(heldout), whole, shared + whole, found, total, self.texts, self.words,
                             shown_whole[:examples], shown_shared[:examples])


@dataclass(frozen=True)
class OverlapReport:
    """The result of OverlapIndex.check: counts, and a few examples of each kind of match."""

    n: int
    heldout: int
    whole: int  # held-out texts found whole in training text
    with_shared_ngram: int  # held-out texts (whole ones included) sharing at least one n-gram
    ngrams_found: int
    ngrams: int
    train_texts: int
    train_words: int
    whole_examples: list[str]
    shared_examples: list[str]

    def line(self) -> str:
        """One printable line."""
        share = self.ngrams_found / self.ngrams if self.ngrams else 0.0
        return (f"{self.heldout:,} held-out texts vs {self.train_texts:,} training texts ({self.train_words:,} words): "
                f"{self.whole:,} found whole, {self.with_shared_ngram:,} share a {self.n}-gram "
                f"({self.ngrams_found:,} of {self.ngrams:,} held-out {self.n}-grams = {share:.2%})")


def overlap(train: Iterable[str], heldout: Sequence[str], n: int = 8, short_spans: bool = False) -> OverlapReport:
    """Index the training texts and check the held-out ones against them."""
    return OverlapIndex(n, short_spans).add(train).check(heldout)


class LeakError(AssertionError):
    """Held-out text found in training text."""


def assert_no_leak(report: OverlapReport, max_whole: int = 0, max_shared: int | None = None) -> None:
    """Raise LeakError (with the counts and examples) when more held-out texts overlap than allowed."""
    if report.whole > max_whole or (max_shared is not None and report.with_shared_ngram > max_shared):
        raise LeakError(f"held-out text occurs in training text: {report.line()}; e.g. "
                        f"{(report.whole_examples or report.shared_examples)[:2]}")
