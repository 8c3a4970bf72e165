"""Binary and multiclass quality as additive sums: labeled, correct, and per-class tp/fp/fn."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from otel_ml.quality._prf import averaged, prf


@dataclass(slots=True)
class ClassificationSums:
    """Sufficient statistics of classification quality.

    Attributes:
        labeled: Joined predictions.
        correct: Joined predictions whose class equals the label.
        outcomes: class -> [tp, fp, fn]. Only classes seen in predictions or labels appear.
    """

    labeled: int = 0
    correct: int = 0
    outcomes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))


def classification_sums(y_true: Sequence[str], y_pred: Sequence[str]) -> ClassificationSums:
    """Sums of one batch of ``(label, prediction)`` class strings.

    Example:
        >>> s = classification_sums(["a", "b", "b"], ["a", "a", "b"])
        >>> s.labeled, s.correct, dict(s.outcomes)
        (3, 2, {'a': [1, 1, 0], 'b': [1, 0, 1]})
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} values, y_pred {len(y_pred)}")
    out = ClassificationSums()
    oc = out.outcomes
    correct = 0
    for (t, p), n in Counter(zip(y_true, y_pred, strict=True)).items():  # counted in C: one step per distinct pair
        if t == p:
            correct += n
            oc[t][0] += n
        else:
            oc[p][1] += n
            oc[t][2] += n
    out.labeled = len(y_true)
    out.correct = correct
    return out


class ClassificationAccumulator:
    """Mergeable accumulator of :class:`ClassificationSums` with sklearn-equivalent results."""

    def __init__(self) -> None:
        self.sums_ = ClassificationSums()

    def update(self, y_true: Sequence[str], y_pred: Sequence[str]) -> ClassificationAccumulator:
        """Add a batch."""
        return self.merge_sums(classification_sums(y_true, y_pred))

    def merge_sums(self, other: ClassificationSums) -> ClassificationAccumulator:
        """Add precomputed sums."""
        self.sums_.labeled += other.labeled
        self.sums_.correct += other.correct
        for cls, (tp, fp, fn) in other.outcomes.items():
            o = self.sums_.outcomes[cls]
            o[0] += tp
            o[1] += fp
            o[2] += fn
        return self

    def merge(self, other: ClassificationAccumulator) -> ClassificationAccumulator:
        """Add another accumulator."""
        return self.merge_sums(other.sums_)

    def accuracy(self) -> float:
        """Accuracy; NaN with no joined prediction."""
        return self.sums_.correct / self.sums_.labeled if self.sums_.labeled else float("nan")

    def per_class(self) -> dict[str, tuple[float, float, float]]:
        """class -> (precision, recall, F1), ``zero_division=0``."""
        return {c: prf(*o) for c, o in sorted(self.sums_.outcomes.items())}

    def averaged(self, average: str) -> tuple[float, float, float]:
        """``macro`` or ``micro`` (precision, recall, F1)."""
        return averaged({c: (o[0], o[1], o[2]) for c, o in self.sums_.outcomes.items()}, average)
