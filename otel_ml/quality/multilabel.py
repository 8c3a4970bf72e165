"""Multi-label quality as additive sums: per-label tp/fp/fn, exact matches, predicted labels per sample."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from otel_ml.quality._prf import averaged, prf


@dataclass(slots=True)
class MultilabelSums:
    """Sufficient statistics of multi-label quality.

    Attributes:
        labeled: Joined samples.
        exact: Samples whose predicted set equals the true set (sklearn ``accuracy_score`` on indicator matrices).
        predicted_labels: Sum of predicted set sizes (average = ``predicted_labels / labeled``).
        outcomes: label -> [tp, fp, fn].
    """

    labeled: int = 0
    exact: int = 0
    predicted_labels: int = 0
    outcomes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))


def multilabel_sums(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> MultilabelSums:
    """Sums of one batch of ``(true set, predicted set)``.

    Example:
        >>> s = multilabel_sums([["a", "b"], ["c"]], [["a"], ["c"]])
        >>> s.exact, s.predicted_labels, dict(s.outcomes)
        (1, 2, {'a': [1, 0, 0], 'b': [0, 0, 1], 'c': [1, 0, 0]})
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} samples, y_pred {len(y_pred)}")
    out = MultilabelSums()
    oc = out.outcomes
    for t_list, p_list in zip(y_true, y_pred, strict=True):
        t, p = set(t_list), set(p_list)
        out.predicted_labels += len(p)
        if t == p:
            out.exact += 1
        for lab in t & p:
            oc[lab][0] += 1
        for lab in p - t:
            oc[lab][1] += 1
        for lab in t - p:
            oc[lab][2] += 1
    out.labeled = len(y_true)
    return out


class MultilabelAccumulator:
    """Mergeable accumulator of :class:`MultilabelSums`."""

    def __init__(self) -> None:
        self.sums_ = MultilabelSums()

    def update(self, y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> MultilabelAccumulator:
        """Add a batch."""
        return self.merge_sums(multilabel_sums(y_true, y_pred))

    def merge_sums(self, other: MultilabelSums) -> MultilabelAccumulator:
        """Add precomputed sums."""
        s = self.sums_
        s.labeled += other.labeled
        s.exact += other.exact
        s.predicted_labels += other.predicted_labels
        for lab, (tp, fp, fn) in other.outcomes.items():
            o = s.outcomes[lab]
            o[0] += tp
            o[1] += fp
            o[2] += fn
        return self

    def merge(self, other: MultilabelAccumulator) -> MultilabelAccumulator:
        """Add another accumulator."""
        return self.merge_sums(other.sums_)

    def exact_match(self) -> float:
        """Subset accuracy; NaN when empty."""
        return self.sums_.exact / self.sums_.labeled if self.sums_.labeled else float("nan")

    def labels_per_sample(self) -> float:
        """Average predicted set size; NaN when empty."""
        return self.sums_.predicted_labels / self.sums_.labeled if self.sums_.labeled else float("nan")

    def per_label(self) -> dict[str, tuple[float, float, float]]:
        """label -> (precision, recall, F1), ``zero_division=0``."""
        return {c: prf(*o) for c, o in sorted(self.sums_.outcomes.items())}

    def averaged(self, average: str) -> tuple[float, float, float]:
        """``macro`` or ``micro`` (precision, recall, F1) over labels seen."""
        return averaged({c: (o[0], o[1], o[2]) for c, o in self.sums_.outcomes.items()}, average)
