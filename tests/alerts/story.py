"""A 30-day production story of a multilabel tagger, shaped like the Deepchecks case study, from a seed.

The world (fixed): a ticket has a hidden content vector ``u`` (3 dimensions), a ``language`` (en, de, fr, ja), a
``text_length`` and an ``n_entities`` count. 19 tags exist; tag ``j`` is true with probability
``sigmoid(u . W_j + b_j)``. Tags ``t18`` and ``t19`` belong to a product that does not exist yet: they are never
true (nor predicted) until it launches, so the evaluation set has 17 tags and production 19. The model sees ``u``
through noise that is larger for Japanese tickets (a weak segment of the evaluation set) and for texts longer than it
was trained on; it predicts the tags whose score reaches a threshold (0.5).

Causes, each from its own day (a :class:`Schedule`):

* ``feature_drift``: ``text_length`` drifts upwards over a day (a client pads messages); long texts often carry one
  more topic the model cannot see in them, so it gets worse there (invisible to a score-based estimate);
* ``unseen_class``: the new product launches; its tickets carry ``t18`` / ``t19``, which the model predicts;
* ``weak_segment``: traffic moves into Japanese tickets (10 % -> 35 %), which the model reads worse and is less
  confident about (the estimate sees this one);
* ``predictions_per_sample``: the serving threshold drops to 0.43, so the average number of predicted tags rises by
  about 10 % (1.9 -> 2.1, as the case study's 1.96 -> 2.21);
* ``label_coverage`` (the label-pipeline story): the share of predictions that will get a label falls from 30 % to
  12 %; later (``labels_stopped``) the label pipeline stops delivering altogether.

Labels arrive for 30 % of the predictions, one to three days late (uniform). Healthy stories have no cause. The
ground truth (the expected exact-match accuracy of every day, by simulation) is part of the story, so a test can say
when quality really dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

TAGS = tuple(f"t{i:02d}" for i in range(1, 20))
KNOWN_TAGS = TAGS[:17]
"""Tags of the evaluation set (the model knows 19: the new product's two were trained on a handful of tickets)."""
NEW_TAGS = TAGS[17:]
LANGUAGES = ("en", "de", "fr", "ja")
WEAK_LANGUAGE = "ja"
BASE_LANGUAGE_MIX = (0.45, 0.25, 0.20, 0.10)
SHIFTED_LANGUAGE_MIX = (0.30, 0.20, 0.15, 0.35)
FEATURES = ("language", "text_length", "n_entities")
DRIFTING_FEATURE = "text_length"
THRESHOLD = 0.5
LOW_THRESHOLD = 0.43
NEW_PRODUCT_SHARE = 0.05
LABEL_SHARE = 0.30
LOW_LABEL_SHARE = 0.12
LABEL_DELAY_DAYS = (1.0, 3.0)
DRIFT_RAMP_DAYS = 1.0
DRIFT_LOG_SHIFT = 0.3
"""Shift of log(text_length) at the end of the ramp (in units of its sd 0.4: 0.75 sd, texts 35 % longer)."""

_WORLD = np.random.default_rng(20260101)
_W = _WORLD.normal(0.0, 4.0, size=(3, len(TAGS)))
_B = np.full(len(TAGS), -7.0) + _WORLD.normal(0.0, 0.35, size=len(TAGS))
_NEW_TOPIC = 9.0
"""Logit added to the new product's tags on its tickets (they are impossible otherwise)."""
_NOISE = {"en": 0.35, "de": 0.38, "fr": 0.38, "ja": 0.8}
"""Noise of the model's view of the content, by language: Japanese tickets (the weak segment) were learned from few
examples, so the model reads them worse, knows it, and is less confident there (its scores stay calibrated)."""
_LONG_TEXT_TAG = 4
"""Long texts often carry one more topic (tag ``t05``) that the model cannot see in them: it misses it."""
_LONG_TEXT_LOGIT = 6.0
"""Logit added to that tag per sd of log(text_length) above one sd."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """Day (from 0, fractional) each cause starts; ``None``: never."""

    feature_drift: float | None = None
    unseen_class: float | None = None
    weak_segment: float | None = None
    predictions_per_sample: float | None = None
    label_coverage: float | None = None
    labels_stopped: float | None = None

    def active(self, cause: str, day: float) -> bool:
        """Whether ``cause`` is in effect at ``day``."""
        start = getattr(self, cause)
        return start is not None and day >= start

    def onsets(self) -> dict[str, float]:
        """Causes that happen, and when."""
        return {k: v for k in ("feature_drift", "unseen_class", "weak_segment", "predictions_per_sample",
                               "label_coverage", "labels_stopped") if (v := getattr(self, k)) is not None}


HEALTHY = Schedule()


def deepchecks_schedule(seed: int) -> Schedule:
    """The Deepchecks-like story: drift, new tags, weak-language traffic and more tags per ticket, a few days apart
    (the seed moves each onset by up to a day)."""
    jitter = np.random.default_rng(seed + 77).uniform(0.0, 1.0, size=4)
    return Schedule(feature_drift=6 + jitter[0], unseen_class=10 + jitter[1], weak_segment=14 + jitter[2],
                    predictions_per_sample=18 + jitter[3])


def labels_schedule(seed: int) -> Schedule:
    """The label-pipeline story: coverage falls on day ~16, delivery stops on day ~25."""
    jitter = np.random.default_rng(seed + 91).uniform(0.0, 1.0, size=2)
    return Schedule(label_coverage=16 + jitter[0], labels_stopped=25 + jitter[1])


@dataclass(slots=True)
class Tickets:
    """A batch of tickets with the model's outputs."""

    language: np.ndarray
    text_length: np.ndarray
    n_entities: np.ndarray
    truth: list[list[str]]
    predicted: list[list[str]]
    scores: np.ndarray
    """``(n, 19)`` model scores, in :data:`TAGS` order."""
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.truth)

    def features(self) -> dict[str, np.ndarray]:
        """Feature columns as logged."""
        return {"language": self.language, "text_length": self.text_length, "n_entities": self.n_entities}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def generate(rng: np.random.Generator, n: int, schedule: Schedule, day: float) -> Tickets:
    """``n`` tickets of ``day`` under ``schedule`` (its causes in effect that day)."""
    mix = SHIFTED_LANGUAGE_MIX if schedule.active("weak_segment", day) else BASE_LANGUAGE_MIX
    language = rng.choice(np.array(LANGUAGES), size=n, p=np.asarray(mix))
    u = rng.standard_normal((n, 3))
    log_len = 0.4 * rng.standard_normal(n)
    if schedule.feature_drift is not None and day >= schedule.feature_drift:
        log_len += DRIFT_LOG_SHIFT * min(1.0, (day - schedule.feature_drift) / DRIFT_RAMP_DAYS)
    text_length = np.round(300.0 * np.exp(log_len))
    n_entities = rng.poisson(1.2 + 0.6 * np.abs(u[:, 0])).astype(float)
    new_topic = schedule.active("unseen_class", day) & (rng.random(n) < NEW_PRODUCT_SHARE)
    logits = u @ _W + _B
    logits[:, _LONG_TEXT_TAG] += _LONG_TEXT_LOGIT * np.maximum(log_len / 0.4 - 1.0, 0.0)
    logits[:, 17:] = np.where(new_topic[:, None], logits[:, 17:] + _NEW_TOPIC, -np.inf)
    truth_m = rng.random(logits.shape) < _sigmoid(logits)
    var = np.array([_NOISE[str(x)] for x in language]) ** 2
    # the model's calibrated belief from a noisy view of the content: posterior mean and variance of u, then
    # E[sigmoid(logit)] by the probit approximation (less confident where it reads worse)
    mean = (u + np.sqrt(var)[:, None] * rng.standard_normal((n, 3))) / (1.0 + var[:, None])
    post = var / (1.0 + var)
    spread = np.sqrt(1.0 + np.pi / 8.0 * post[:, None] * np.sum(_W**2, axis=0)[None, :])
    model_logits = (mean @ _W + _B) / spread
    model_logits[:, 17:] = np.where(new_topic[:, None], model_logits[:, 17:] + _NEW_TOPIC - 2.0, -np.inf)
    scores = _sigmoid(model_logits)
    threshold = LOW_THRESHOLD if schedule.active("predictions_per_sample", day) else THRESHOLD
    pred_m = scores >= threshold
    names = np.array(TAGS)
    truth = [list(names[row]) for row in truth_m]
    predicted = [list(names[row]) for row in pred_m]
    return Tickets(language, text_length, n_entities, truth, predicted, scores)


def evaluation_set(seed: int, n: int = 5000) -> pd.DataFrame:
    """The labeled evaluation set (the world before any cause), one row per ticket: features, ``tags`` (truth) and
    ``tags_pred`` as ``a|b`` strings, and a score column ``s_<tag>`` per known tag."""
    t = generate(np.random.default_rng(seed), n, HEALTHY, 0.0)
    frame = pd.DataFrame(t.features())
    frame["tags"] = ["|".join(x) for x in t.truth]
    frame["tags_pred"] = ["|".join(x) for x in t.predicted]
    for j, tag in enumerate(KNOWN_TAGS):
        frame[f"s_{tag}"] = t.scores[:, j]
    return frame


def label_share(schedule: Schedule, day: float) -> float:
    """Share of the predictions of ``day`` that will get a label (if the pipeline still delivers it)."""
    return LOW_LABEL_SHARE if schedule.active("label_coverage", day) else LABEL_SHARE


def delivers_labels(schedule: Schedule, day: float) -> bool:
    """Whether labels due on ``day`` are delivered (the label pipeline works)."""
    return not schedule.active("labels_stopped", day)


def expected_exact_match(schedule: Schedule, day: float, n: int = 40000, seed: int = 5) -> float:
    """Ground truth: the exact-match accuracy of the model on ``day`` (a large simulated sample)."""
    t = generate(np.random.default_rng(seed), n, schedule, day)
    return float(np.mean([set(a) == set(b) for a, b in zip(t.truth, t.predicted, strict=True)]))


def quality_onset(schedule: Schedule, min_effect: float, days: int = 30, step: float = 0.5) -> float | None:
    """First (half) day the true exact match is below the day-0 level by more than ``min_effect``."""
    base = expected_exact_match(HEALTHY, 0.0)
    for k in range(int(days / step)):
        day = k * step
        if base - expected_exact_match(schedule, day) > min_effect:
            return day
    return None
