"""The demo's world: a support-ticket service whose traffic changes during a compressed production period.

Everything is synthetic and generated here from a seed (no downloads): tickets have four numeric features and a
``region`` segment; a multiclass *router* model sends each ticket to a team, and a multilabel *tagger* model puts
tags on it. The :class:`Schedule` says when each injected change starts, as a fraction of the period:

* ``feature_drift``: ``message_length`` drifts upwards (a client update pads messages) and the router, which relies
  on it, gets worse;
* ``weak_segment``: traffic shifts into the ``apac`` region, a slice where the router was already weak on the
  evaluation set;
* ``unseen_class``: tickets about a new product appear; the router, trained with a handful of them, starts
  predicting the class ``mystery`` that the evaluation set never had, and misroutes the rest;
* ``set_size``: a new tagger version with a lower decision threshold ships late in the period, so the number of
  tags predicted per ticket rises (and precision falls).

Labels arrive late (one to three days after the prediction) and only for part of the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CLASSES: tuple[str, ...] = ("account", "billing", "shipping", "technical")
"""Teams the router knows from its evaluation set."""
UNSEEN_CLASS = "mystery"
"""The class that appears in production and is absent from the evaluation set."""
ROUTER_CLASSES: tuple[str, ...] = (*CLASSES, UNSEEN_CLASS)
"""Classes of the trained router (it saw a few ``mystery`` tickets in training)."""
REGIONS: tuple[str, ...] = ("eu", "us", "apac")
WEAK_REGION = "apac"
FEATURES: tuple[str, ...] = ("message_length", "account_age_days", "attachments", "sentiment")
DRIFTING_FEATURE = "message_length"
TAGS: tuple[str, ...] = ("urgent", "refund", "bug", "login", "delivery")

# Class centres in standardized feature space. The teams differ in `message_length` and `account_age_days`;
# `mystery` lies beyond `account`, so the router recognizes only part of it. `attachments` and `sentiment` do not
# depend on the team: they drive the tags, so the tagger is untouched by the router's troubles.
_CENTRES = np.array([
    [-1.2, 1.0],   # account
    [1.0, 1.0],    # billing
    [1.0, -1.2],   # shipping
    [-1.2, -1.0],  # technical
    [-2.0, 2.4],   # mystery
])
_NOISE = {"eu": (0.6, 0.6), "us": (0.6, 0.6), "apac": (1.8, 0.6)}
"""Noise of the team-dependent features by region: `apac` messages vary more, so they are harder to route."""
_TAG_WEIGHTS = np.array([
    [0.0, -2.0],    # urgent: negative sentiment
    [0.8, -1.0],    # refund
    [1.6, 0.0],     # bug: attachments
    [-1.2, 0.6],    # login
    [-0.6, -0.8],   # delivery
])
_TAG_BIAS = np.array([-1.6, -2.0, -1.4, -2.0, -1.8])
BASE_REGION_MIX: tuple[float, ...] = (0.48, 0.44, 0.08)
SHIFTED_REGION_MIX: tuple[float, ...] = (0.25, 0.25, 0.50)
DRIFT_SHIFT = 0.9
"""Shift of the drifting feature (standardized units) from the day the drift starts."""
UNSEEN_SHARE = 0.15
TAGGER_THRESHOLD = 0.5
TAGGER_LOW_THRESHOLD = 0.2


@dataclass(frozen=True, slots=True)
class Change:
    """One injected change of the production period.

    Attributes:
        key: Stable identifier (``feature_drift``, ``weak_segment``, ``unseen_class``, ``set_size``).
        start: Fraction of the period at which it starts.
        what: One sentence for people.
    """

    key: str
    start: float
    what: str

    def start_day(self, days: int) -> int:
        """First simulated day the change is in effect."""
        return round(self.start * days)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When each change starts, and how the labels behave."""

    changes: tuple[Change, ...] = (
        Change("feature_drift", 0.25, f"`{DRIFTING_FEATURE}` drifts upwards (a client update pads messages)"),
        Change("weak_segment", 0.40, f"traffic shifts into region={WEAK_REGION}, a weak slice of the evaluation set"),
        Change("unseen_class", 0.55, f"tickets about a new product appear; the router predicts `{UNSEEN_CLASS}`"),
        Change("set_size", 0.75, "tagger v2 ships with a lower threshold: more tags predicted per ticket"),
    )
    label_share: float = 0.35
    """Share of predictions that ever get a label."""
    label_delay_days: tuple[int, int] = (1, 3)
    """Labels arrive this many days (inclusive range) after the prediction."""

    def change(self, key: str) -> Change:
        """The change named ``key``."""
        for c in self.changes:
            if c.key == key:
                return c
        raise KeyError(key)

    def active(self, key: str, day: int, days: int) -> bool:
        """Whether change ``key`` is in effect on ``day`` of a ``days``-long period."""
        return day >= self.change(key).start_day(days)


@dataclass(slots=True)
class Tickets:
    """A batch of tickets: features, segment, true team and true tags."""

    features: np.ndarray
    """float64 ``(n, len(FEATURES))`` in natural units."""
    region: np.ndarray
    """``(n,)`` region strings."""
    team: np.ndarray
    """``(n,)`` true team (class) strings."""
    tags: np.ndarray
    """bool ``(n, len(TAGS))`` true tags."""
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.features.shape[0])


def _to_natural(z: np.ndarray) -> np.ndarray:
    """Standardized features -> natural units (characters, days, count-like, score)."""
    out = np.empty_like(z)
    out[:, 0] = 300.0 + 80.0 * z[:, 0]
    out[:, 1] = 400.0 + 120.0 * z[:, 1]
    out[:, 2] = 2.0 + z[:, 2]
    out[:, 3] = 0.5 * z[:, 3]
    return out


def generate(rng: np.random.Generator, n: int, *, region_mix: tuple[float, ...] = BASE_REGION_MIX,
             unseen_share: float = 0.0, drift: float = 0.0) -> Tickets:
    """Draw ``n`` tickets.

    Args:
        rng: Random generator (the only source of randomness).
        n: Number of tickets.
        region_mix: Probabilities of :data:`REGIONS`.
        unseen_share: Share of tickets of the new product (true team :data:`UNSEEN_CLASS`).
        drift: Shift of :data:`DRIFTING_FEATURE` in standard deviations.

    Returns:
        The tickets.
    """
    region = rng.choice(np.array(REGIONS), size=n, p=np.asarray(region_mix))
    k = len(CLASSES)
    cls = rng.integers(0, k, size=n)
    if unseen_share > 0:
        cls = np.where(rng.random(n) < unseen_share, k, cls)
    noise = np.array([_NOISE[str(r)] for r in region])
    z = rng.standard_normal((n, len(FEATURES)))
    z[:, :2] = _CENTRES[cls] + z[:, :2] * noise
    z[:, 0] += drift
    logits = z[:, 2:] @ _TAG_WEIGHTS.T + _TAG_BIAS
    tags = rng.random(logits.shape) < 1.0 / (1.0 + np.exp(-logits))
    team = np.array(ROUTER_CLASSES)[cls]
    return Tickets(_to_natural(z), region, team, tags)


def training_set(rng: np.random.Generator, n: int = 6000) -> Tickets:
    """Training data: the base distribution with a few tickets of the new product (3 %)."""
    return generate(rng, n, unseen_share=0.03)


def evaluation_set(rng: np.random.Generator, n: int = 3000) -> Tickets:
    """The labeled evaluation set the reference is fitted on: base distribution, no ``mystery`` tickets."""
    return generate(rng, n)


def production_day(rng: np.random.Generator, schedule: Schedule, day: int, days: int, n: int) -> Tickets:
    """Tickets of one simulated production day, with every change active on that day applied."""
    return generate(
        rng, n,
        region_mix=SHIFTED_REGION_MIX if schedule.active("weak_segment", day, days) else BASE_REGION_MIX,
        unseen_share=UNSEEN_SHARE if schedule.active("unseen_class", day, days) else 0.0,
        drift=DRIFT_SHIFT if schedule.active("feature_drift", day, days) else 0.0,
    )


def tagger_threshold(schedule: Schedule, day: int, days: int) -> tuple[str, float]:
    """Version and decision threshold of the tagger deployed on ``day``."""
    if schedule.active("set_size", day, days):
        return "2", TAGGER_LOW_THRESHOLD
    return "1", TAGGER_THRESHOLD
