"""What a trained model leaks about its training data: membership inference and memorised canaries.

Membership: the loss-threshold attack of Yeom et al. (2018), "Privacy Risk in Machine Learning: Analyzing the
Connection to Overfitting" (CSF), scored by AUC and Yeom's advantage, on length-matched members and non-members.
Canaries and exposure: Carlini et al. (2019), "The Secret Sharer: Evaluating and Testing Unintended Memorization in
Neural Networks" (USENIX Security), with the sampled rank estimate and the skew-normal extrapolation.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from scipy import stats


def match_lengths(member_lengths: Sequence[int], nonmember_lengths: Sequence[int],
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices into each side keeping, per length value, the smaller side's count (chosen at random)."""
    m, n = np.asarray(member_lengths), np.asarray(nonmember_lengths)
    rng = np.random.default_rng(seed)
    keep_m: list[np.ndarray] = []
    keep_n: list[np.ndarray] = []
    for value in np.intersect1d(m, n):
        im, inn = np.flatnonzero(m == value), np.flatnonzero(n == value)
        k = min(len(im), len(inn))
        keep_m.append(rng.choice(im, size=k, replace=False))
        keep_n.append(rng.choice(inn, size=k, replace=False))
    empty = np.zeros(0, dtype=np.int64)
    return (np.sort(np.concatenate(keep_m)) if keep_m else empty,
            np.sort(np.concatenate(keep_n)) if keep_n else empty)


def _losses(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """A non-empty, finite 1-D float array of losses."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0 or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be a non-empty 1-D array of finite losses, got shape {arr.shape}.")
    return arr


def _auc(member: np.ndarray, nonmember_sorted: np.ndarray) -> float:
    """Mann-Whitney P(member loss < non-member loss) + 0.5 P(tie), i.e. the AUC of score = -loss."""
    left = np.searchsorted(nonmember_sorted, member, side="left")
    right = np.searchsorted(nonmember_sorted, member, side="right")
    wins = (len(nonmember_sorted) - right).sum() + 0.5 * (right - left).sum()
    return float(wins / (len(member) * len(nonmember_sorted)))


def membership_auc(member_losses: Sequence[float] | np.ndarray, nonmember_losses: Sequence[float] | np.ndarray,
                   n_resamples: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """AUC of the loss-threshold attack with a bootstrap interval, and Yeom's advantage at the mean member loss."""
    member, nonmember = _losses(member_losses, "member_losses"), _losses(nonmember_losses, "nonmember_losses")
    auc = _auc(member, np.sort(nonmember))
    rng = np.random.default_rng(seed)
    boots = np.empty(n_resamples)
    for b in range(n_resamples):
        bm = member[rng.integers(0, len(member), size=len(member))]
        bn = nonmember[rng.integers(0, len(nonmember), size=len(nonmember))]
        boots[b] = _auc(bm, np.sort(bn))
    low, high = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    threshold = member.mean()
    advantage = float((member < threshold).mean() - (nonmember < threshold).mean())
    return {"auc": auc, "low": float(low), "high": float(high), "advantage": advantage,
            "n_members": len(member), "n_nonmembers": len(nonmember)}


def _format(number: int, prefix: str, digits: int) -> str:
    """A canary-format string: the prefix, then the zero-padded number's digits separated by spaces."""
    return f"{prefix} " + " ".join(f"{number:0{digits}d}")


def _distinct_numbers(k: int, digits: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct random integers in [0, 10**digits)."""
    if not 1 <= digits <= 18:
        raise ValueError(f"digits must be between 1 and 18, got {digits}.")
    if not 0 <= k <= 10**digits:
        raise ValueError(f"cannot draw {k} distinct {digits}-digit strings (only {10**digits} exist).")
    return rng.choice(10**digits, size=k, replace=False)


def make_canaries(n: int, seed: int = 0, digits: int = 6, prefix: str = "my secret number is") -> list[str]:
    """n distinct canaries such as "my secret number is 4 0 7 1 9 3" (one token per digit)."""
    rng = np.random.default_rng(seed)
    return [_format(int(x), prefix, digits) for x in _distinct_numbers(n, digits, rng)]


def insert_canaries(docs: Sequence[str], canaries: Sequence[str], repeats: Sequence[int], seed: int = 0) -> list[str]:
    """docs (kept in order) with canary i inserted repeats[i] times as its own document at random positions."""
    if len(canaries) != len(repeats) or any(r < 0 for r in repeats):
        raise ValueError(f"need one non-negative repeat count per canary, got {len(repeats)} for {len(canaries)}.")
    rng = np.random.default_rng(seed)
    inserts = [c for c, r in zip(canaries, repeats, strict=True) for _ in range(int(r))]
    inserts = [inserts[i] for i in rng.permutation(len(inserts))]
    total = len(docs) + len(inserts)
    slots = np.zeros(total, dtype=bool)
    slots[rng.choice(total, size=len(inserts), replace=False)] = True
    doc_iter, ins_iter = iter(docs), iter(inserts)
    return [next(ins_iter) if s else next(doc_iter) for s in slots]


def candidate_space(prefix: str = "my secret number is", digits: int = 6, n: int = 1000, seed: int = 0,
                    exclude: Collection[str] = ()) -> list[str]:
    """n distinct random strings of the canary format (the space R) that are not in exclude."""
    rng = np.random.default_rng(seed)
    excluded = set(exclude)
    numbers = _distinct_numbers(min(10**digits, n + len(excluded)), digits, rng)
    out = [s for s in (_format(int(x), prefix, digits) for x in numbers) if s not in excluded][:n]
    if len(out) < n:
        raise ValueError(f"only {len(out)} candidates of {digits} digits remain outside exclude, asked for {n}.")
    return out


def exposure(canary_score: float, candidate_scores: Sequence[float] | np.ndarray, space_size: int) -> float:
    """Carlini's exposure log2|R| - log2(rank), rank = 1 + |R| x share of sampled candidates scored below the canary."""
    cand = np.asarray(candidate_scores, dtype=np.float64)
    if cand.ndim != 1 or len(cand) == 0 or space_size < 1:
        raise ValueError(f"need a non-empty 1-D candidate_scores and space_size >= 1, got {cand.shape}, {space_size}.")
    fraction = max(int((cand < canary_score).sum()), 0) / len(cand)
    return float(np.log2(space_size) - np.log2(1 + space_size * fraction))


def exposure_skewnorm(canary_score: float, candidate_scores: Sequence[float] | np.ndarray, space_size: int) -> float:
    """Exposure with the rank extrapolated from a skew-normal fit: rank = max(1, |R| x CDF(canary score))."""
    cand = np.asarray(candidate_scores, dtype=np.float64)
    if cand.ndim != 1 or len(cand) < 3 or space_size < 1:
        raise ValueError(f"need >= 3 candidate scores and space_size >= 1, got {cand.shape}, {space_size}.")
    params = stats.skewnorm.fit(cand)
    log2_rank = np.log2(space_size) + stats.skewnorm.logcdf(canary_score, *params) / np.log(2)
    return float(np.log2(space_size) - max(0.0, log2_rank))


def dedup_documents(docs: Sequence[str]) -> list[str]:
    """docs without exact duplicates after whitespace normalisation; first occurrences kept, in order."""
    seen: set[str] = set()
    out = []
    for doc in docs:
        norm = " ".join(doc.split())
        if norm not in seen:
            seen.add(norm)
            out.append(doc)
    return out
