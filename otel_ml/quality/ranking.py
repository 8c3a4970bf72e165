"""Ranking quality as additive sums: reciprocal rank, precision@k and NDCG@k (linear gain, log2 discount)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def _relevance(relevant: Sequence[str], relevance: Sequence[float] | None) -> dict[str, float]:
    if relevance is None or len(relevance) == 0:
        return dict.fromkeys(relevant, 1.0)
    if len(relevance) != len(relevant):
        raise ValueError(f"{len(relevant)} relevant items but {len(relevance)} relevance grades")
    return {item: float(g) for item, g in zip(relevant, relevance, strict=True)}


def reciprocal_rank(ranked: Sequence[str], relevant: Sequence[str], relevance: Sequence[float] | None = None) -> float:
    """1 / rank of the first relevant item (grade > 0) in ``ranked``; 0 when none is ranked.

    Example:
        >>> reciprocal_rank(["x", "y", "z"], ["z"])
        0.3333333333333333
    """
    rel = _relevance(relevant, relevance)
    for i, item in enumerate(ranked):
        if rel.get(item, 0.0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def precision_at_k(ranked: Sequence[str], relevant: Sequence[str], k: int,
                   relevance: Sequence[float] | None = None) -> float:
    """Relevant items (grade > 0) among the first ``k`` ranked, divided by ``k``.

    Example:
        >>> precision_at_k(["x", "y", "z"], ["y", "z"], 2)
        0.5
    """
    rel = _relevance(relevant, relevance)
    return sum(1 for item in ranked[:k] if rel.get(item, 0.0) > 0) / k


def ndcg_at_k(ranked: Sequence[str], relevant: Sequence[str], k: int,
              relevance: Sequence[float] | None = None) -> float:
    """NDCG@k with linear gains (``sklearn.metrics.ndcg_score``); 0 when no item is relevant.

    Example:
        >>> round(ndcg_at_k(["x", "y"], ["y"], 2), 4)
        0.6309
    """
    rel = _relevance(relevant, relevance)
    dcg = sum(rel.get(item, 0.0) / math.log2(i + 2) for i, item in enumerate(ranked[:k]))
    ideal = sorted(rel.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


@dataclass(slots=True)
class RankingSums:
    """Sufficient statistics: MRR = reciprocal_rank/labeled, P@k = precision[k]/labeled, NDCG@k likewise."""

    labeled: int = 0
    reciprocal_rank: float = 0.0
    precision: dict[int, float] = field(default_factory=dict)
    ndcg: dict[int, float] = field(default_factory=dict)


def ranking_sums(ranked: Sequence[Sequence[str]], relevant: Sequence[Sequence[str]], ks: Sequence[int],
                 relevance: Sequence[Sequence[float] | None] | None = None) -> RankingSums:
    """Sums of one batch of rankings."""
    if len(ranked) != len(relevant):
        raise ValueError(f"{len(ranked)} rankings but {len(relevant)} label sets")
    out = RankingSums(precision=dict.fromkeys(ks, 0.0), ndcg=dict.fromkeys(ks, 0.0))
    for i, (r, t) in enumerate(zip(ranked, relevant, strict=True)):
        g = relevance[i] if relevance is not None else None
        out.reciprocal_rank += reciprocal_rank(r, t, g)
        for k in ks:
            out.precision[k] += precision_at_k(r, t, k, g)
            out.ndcg[k] += ndcg_at_k(r, t, k, g)
    out.labeled = len(ranked)
    return out


class RankingAccumulator:
    """Mergeable accumulator of :class:`RankingSums`."""

    def __init__(self, ks: Sequence[int]) -> None:
        self.ks = tuple(ks)
        self.sums_ = RankingSums(precision=dict.fromkeys(self.ks, 0.0), ndcg=dict.fromkeys(self.ks, 0.0))

    def update(self, ranked: Sequence[Sequence[str]], relevant: Sequence[Sequence[str]],
               relevance: Sequence[Sequence[float] | None] | None = None) -> RankingAccumulator:
        """Add a batch."""
        return self.merge_sums(ranking_sums(ranked, relevant, self.ks, relevance))

    def merge_sums(self, o: RankingSums) -> RankingAccumulator:
        """Add precomputed sums (for the same ks)."""
        s = self.sums_
        s.labeled += o.labeled
        s.reciprocal_rank += o.reciprocal_rank
        for k in self.ks:
            s.precision[k] += o.precision.get(k, 0.0)
            s.ndcg[k] += o.ndcg.get(k, 0.0)
        return self

    def merge(self, other: RankingAccumulator) -> RankingAccumulator:
        """Add another accumulator."""
        return self.merge_sums(other.sums_)

    def mrr(self) -> float:
        """Mean reciprocal rank; NaN when empty."""
        return self.sums_.reciprocal_rank / self.sums_.labeled if self.sums_.labeled else float("nan")

    def precision_at(self, k: int) -> float:
        """Mean precision@k; NaN when empty."""
        return self.sums_.precision[k] / self.sums_.labeled if self.sums_.labeled else float("nan")

    def ndcg_at(self, k: int) -> float:
        """Mean NDCG@k; NaN when empty."""
        return self.sums_.ndcg[k] / self.sums_.labeled if self.sums_.labeled else float("nan")
