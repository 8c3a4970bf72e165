"""Recording rules of the significance tests: "changed, significantly, by more than the minimum effect", in PromQL.

Each statistical alert family (:data:`otel_ml.alerting.thresholds.FAMILIES`) gets, per window ``W`` of the family:

* the observed quantity and its **effect** against the evaluation-set baseline (``...:ratio_rate<W>``), computed
  from additive counters summed across processor replicas (a ratio of sums, any window);
* its **threshold** ``max(min_effect, z * se)`` (``...:threshold<W>``), where ``z`` is the family's per-model
  ``model:ml_<family>_z<W>:threshold`` and ``se`` the standard error of the effect when nothing changed:
  ``sd * sqrt(1/n + 1/N)`` with ``n`` what the window holds, ``sd`` the per-row standard deviation recorded by
  ``otel-ml reference fit`` (``ml.reference.metric_sd``) or the window's own counts (estimated quality) and ``N``
  the evaluation rows (``ml.reference.rows``; without it the baseline counts as exact);
* drift: the population stability index of the window's per-bin counts against the reference bin shares
  (``ml.reference.*.bin_share``), and its chi-square threshold (:func:`otel_ml.alerting.stats.psi_threshold`).

The alert of a family fires when any window's effect exceeds that window's threshold (short windows react fast at
high volume, long ones are sensitive at low volume). See :mod:`otel_ml.alerting.stats` for the statistics.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from otel_ml import promql as q
from otel_ml.alerting.thresholds import FAMILIES, THRESHOLDS, Family
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import QualityMetric as QM
from otel_ml.semconv.metrics import MetricSpec

MV = q.MV
ON_MODEL = f"on ({q.MODEL}) group_left ()"
ON_MV = f"on ({q.MODEL}, {q.VERSION}) group_left ()"
HIGHER_IS_BETTER = (QM.ACCURACY, QM.EXACT_MATCH, QM.F1_MACRO, QM.MRR)
"""Realized quality metrics tested for a drop (MLModelQualityBelowBaseline)."""
LOWER_IS_BETTER = (QM.MAE, QM.RMSE)
"""Realized error metrics tested for a rise (MLModelErrorAboveBaseline)."""
ESTIMATED = (QM.ACCURACY, QM.EXACT_MATCH, QM.F1_MACRO)
"""Estimated quality metrics (multilabel correctness is P(exact match))."""
PSI_SMOOTHING = 0.5
"""Added to every bin count on both sides, as :func:`otel_ml.drift.methods.psi` does."""


def _r(level: str, metric: str, operations: str) -> str:
    return f"{level}:{metric}:{operations}"


def thr(name: str) -> str:
    """Recording rule of a per-model threshold."""
    return THRESHOLDS[name].record


def _regex(values: Iterable[str]) -> str:
    return "|".join(values)


def _tag(expr: str, metric: str) -> str:
    return f'label_replace({expr}, "{q.METRIC}", "{metric}", "", "")'


def vmax_model(expr: str, threshold: str) -> str:
    """Element-wise ``max(expr, threshold)`` where ``threshold`` holds one series per model."""
    return f"(\n  ({expr}) > {ON_MODEL} {threshold}\n  or\n  0 * ({expr}) + {ON_MODEL} {threshold}\n)"


def vmax(a: str, b: str) -> str:
    """Element-wise ``max(a, b)`` of two vectors with the same label sets."""
    return f"(\n  ({a}) > ({b})\n  or\n  ({b})\n)"


def _times_z(expr: str, family: Family, window: str) -> str:
    return f"({expr}) * {ON_MODEL} {family.z_record(window)}"


def corrected_z(family: Family, window: str) -> str:
    """Recording rule: the family's z for one of ``k`` tests of a model version (its features, its weak slices),
    ``sqrt(z^2 + 2 ln k)``: dividing a test's false-alarm share by ``k`` raises ``z^2`` by ``2 ln k`` (the normal
    tail ``phi(z)`` is ``exp(-z^2 / 2)`` up to slowly varying factors). Labels: model and version."""
    return _r("model_version", f"ml_{family.name}_z", f"corrected{window}")


def _corrected_z_rule(family: Family, window: str, tests: str) -> dict[str, Any]:
    return {"record": corrected_z(family, window),
            "expr": f"sqrt(2 * ln({tests}) + {ON_MODEL} {family.z_record(window)} ^ 2)"}


def _inv_rows(n: str) -> str:
    """``+ 1 / N`` of the evaluation set, or ``+ 0`` for a reference that does not export its rows, matched on model
    and version (``n``: a window count with at least those labels)."""
    return f"{ON_MV} (1 / {REFERENCE_ROWS} or 0 * max by ({', '.join(MV)}) ({n}))"


# --- reference helpers -----------------------------------------------------------------------------------------------
REFERENCE = _r("model_version_metric", "ml_reference_metric", "max")
REFERENCE_SD = _r("model_version_metric", "ml_reference_metric_sd", "max")
REFERENCE_ROWS = _r("model_version", "ml_reference_rows", "max")


def reference_rules() -> list[dict[str, Any]]:
    """Baselines, their per-row standard deviations and the evaluation-set rows, max over replicas."""
    return [
        {"record": REFERENCE, "expr": q.max_by((*MV, q.METRIC), q.sel(m.REFERENCE_METRIC))},
        {"record": REFERENCE_SD, "expr": q.max_by((*MV, q.METRIC), q.sel(m.REFERENCE_METRIC_SD))},
        {"record": REFERENCE_ROWS, "expr": q.max_by(MV, q.sel(m.REFERENCE_ROWS))},
    ]


@dataclass(frozen=True, slots=True)
class Test:
    """The recording rules of one family over one window: what the alert compares."""

    effect: str
    threshold: str
    count: str


# --- realized quality ------------------------------------------------------------------------------------------------
QUALITY = FAMILIES["quality"]


def labeled(w: str) -> str:
    """Labeled predictions in window ``w`` (model, version)."""
    return _r("model_version", "ml_labeled_predictions", f"increase{w}")


def quality(w: str) -> str:
    """Realized quality metrics over ``w`` by ``ml_metric``."""
    return _r("model_version_metric", "ml_quality", f"ratio_rate{w}")


def quality_test(w: str) -> Test:
    """Shortfall (baseline - realized, or realized - baseline for errors) and its threshold over ``w``."""
    return Test(_r("model_version_metric", "ml_quality_shortfall", f"ratio_rate{w}"),
                _r("model_version_metric", "ml_quality_shortfall", f"threshold{w}"), labeled(w))


def quality_rules() -> list[dict[str, Any]]:
    """Realized quality per window: counts, metrics, shortfall against the baseline, threshold."""
    rules: list[dict[str, Any]] = []
    good, bad = _regex(HIGHER_IS_BETTER), _regex(LOWER_IS_BETTER)
    for w in QUALITY.windows:
        n = labeled(w)
        accuracy = f"{q.summed_increase(m.CORRECT_PREDICTIONS, w, MV)} / {n}"
        observed = "\nor ".join([
            _tag(accuracy, QM.ACCURACY), _tag(accuracy, QM.EXACT_MATCH), _tag(q.f1_macro(w), QM.F1_MACRO),
            _tag(q.mrr(w), QM.MRR), _tag(q.mae(w), QM.MAE), _tag(q.rmse(w), QM.RMSE)])
        test = quality_test(w)
        se_good = f'{REFERENCE_SD}{{{q.METRIC}=~"{good}"}} * {ON_MV} sqrt(1 / {n} + {_inv_rows(n)})'
        se_bad = f'{REFERENCE_SD}{{{q.METRIC}=~"{bad}"}} * {ON_MV} sqrt(1 / {n} + {_inv_rows(n)})'
        relative_min = f'{REFERENCE}{{{q.METRIC}=~"{bad}"}} * {ON_MODEL} {thr("error_min_effect")}'
        rules += [
            {"record": n, "expr": q.summed_increase(m.LABELED_PREDICTIONS, w, MV)},
            {"record": quality(w), "expr": observed},
            {"record": test.effect,
             "expr": f'{REFERENCE}{{{q.METRIC}=~"{good}"}} - {quality(w)}\n'
                     f'or\n{quality(w)}{{{q.METRIC}=~"{bad}"}} - {REFERENCE}'},
            {"record": test.threshold,
             "expr": f"{vmax_model(_times_z(se_good, QUALITY, w), thr('quality_min_effect'))}\nor\n"
                     f"{vmax(_times_z(se_bad, QUALITY, w), relative_min)}"},
        ]
    return rules


# --- estimated quality -----------------------------------------------------------------------------------------------
ESTIMATED_QUALITY = FAMILIES["estimated_quality"]


def estimated(w: str) -> str:
    """Predictions with a correctness estimate in ``w``."""
    return _r("model_version", "ml_estimated_predictions", f"increase{w}")


def estimated_quality(w: str) -> str:
    """Estimated quality over ``w`` by ``ml_metric`` (accuracy-like: the pessimistic estimate when exported)."""
    return _r("model_version_metric", "ml_estimated_quality", f"ratio_rate{w}")


def estimated_test(w: str) -> Test:
    """Baseline - estimate over ``w``, and its threshold."""
    return Test(_r("model_version_metric", "ml_estimated_quality_shortfall", f"ratio_rate{w}"),
                _r("model_version_metric", "ml_estimated_quality_shortfall", f"threshold{w}"), estimated(w))


def estimated_rules() -> list[dict[str, Any]]:
    """Estimated quality per window: the standard error of an accuracy-like estimate comes from the window's own
    counters (the spread of the per-prediction P(correct): ``(sum p - sum p(1-p)) / n - mean^2``) and the
    baseline's binomial error; macro F1 uses the evaluation set's per-row sd."""
    rules: list[dict[str, Any]] = []
    for w in ESTIMATED_QUALITY.windows:
        n = estimated(w)
        p_sum = q.summed_increase(m.ESTIMATED_CORRECT_PREDICTIONS, w, MV)
        pessimistic = f"({q.summed_increase(m.ESTIMATED_PESSIMISTIC_CORRECT_PREDICTIONS, w, MV)} or {p_sum})"
        variance = q.summed_increase(m.ESTIMATED_CORRECT_VARIANCE, w, MV)
        spread = f"clamp_min(({p_sum} - {variance}) / {n} - ({p_sum} / {n}) ^ 2, 0)"
        acc = f"{pessimistic} / {n}"
        test = estimated_test(w)
        proportions = f'{REFERENCE}{{{q.METRIC}=~"{QM.ACCURACY}|{QM.EXACT_MATCH}"}}'
        acc_se = (f"sqrt(\n  {proportions} * (1 - {proportions}) * {ON_MV} (0 * {n} + {_inv_rows(n)})\n"
                  f"  + {ON_MV} ({spread} / {n})\n)")
        f1_se = f'{REFERENCE_SD}{{{q.METRIC}="{QM.F1_MACRO}"}} * {ON_MV} sqrt(1 / {n} + {_inv_rows(n)})'
        rules += [
            {"record": n, "expr": q.summed_increase(m.ESTIMATED_PREDICTIONS, w, MV)},
            {"record": estimated_quality(w), "expr": "\nor ".join([
                _tag(acc, QM.ACCURACY), _tag(acc, QM.EXACT_MATCH), _tag(q.estimated_f1_macro(w), QM.F1_MACRO)])},
            {"record": test.effect,
             "expr": f'{REFERENCE}{{{q.METRIC}=~"{_regex(ESTIMATED)}"}} - {estimated_quality(w)}'},
            {"record": test.threshold,
             "expr": vmax_model(_times_z(f"{acc_se}\nor\n{f1_se}", ESTIMATED_QUALITY, w),
                                thr("estimated_quality_min_effect"))},
        ]
    return rules


# --- predictions per sample ------------------------------------------------------------------------------------------
PREDICTIONS_PER_SAMPLE = FAMILIES["predictions_per_sample"]


def predictions_per_sample(w: str) -> str:
    """Average labels predicted per sample over ``w``."""
    return _r("model_version", "ml_predictions_per_sample", f"ratio_rate{w}")


def samples(w: str) -> str:
    """Multilabel samples (set sizes observed) in ``w``."""
    return _r("model_version", "ml_multilabel_samples", f"increase{w}")


def predictions_per_sample_test(w: str) -> Test:
    """Signed relative shift from the reference (``0.1`` = 10% more) and the threshold of its absolute value."""
    return Test(_r("model_version", "ml_predictions_per_sample_shift", f"ratio_rate{w}"),
                _r("model_version", "ml_predictions_per_sample_shift", f"threshold{w}"), samples(w))


def predictions_per_sample_rules() -> list[dict[str, Any]]:
    """Mean-shift test of the predictions per sample against the reference's mean and spread."""
    rules: list[dict[str, Any]] = []
    lps = f'{{{q.METRIC}="{QM.LABELS_PER_SAMPLE}"}}'
    for w in PREDICTIONS_PER_SAMPLE.windows:
        n = samples(w)
        test = predictions_per_sample_test(w)
        relative_sd = f"max by ({', '.join(MV)}) ({REFERENCE_SD}{lps} / {REFERENCE}{lps})"
        se = f"{relative_sd} * sqrt(1 / {n} + {_inv_rows(n)})"
        rules += [
            {"record": n, "expr": q.summed_increase(m.MULTILABEL_PREDICTED_LABELS, w, MV, kind="count")},
            {"record": predictions_per_sample(w), "expr": q.predictions_per_sample(w)},
            {"record": test.effect,
             "expr": f"{predictions_per_sample(w)} / ignoring ({q.METRIC}) {REFERENCE}{lps} - 1"},
            {"record": test.threshold,
             "expr": vmax_model(_times_z(se, PREDICTIONS_PER_SAMPLE, w), thr("predictions_per_sample_min_effect"))},
        ]
    return rules


# --- drift -----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Distribution:
    """A binned variable whose drift is tested: counter per bin, reference share per bin, grouping."""

    name: str
    family: Family
    observations: MetricSpec
    reference: MetricSpec
    group: tuple[str, ...]
    level: str
    multiple: bool = False
    """Whether a model version has several such variables (features): z is corrected for their number."""

    def _rec(self, metric: str, operations: str, *, bins: bool = False) -> str:
        return _r(self.level + ("_bin" if bins else ""), metric, operations)

    @property
    def reference_share(self) -> str:
        """Reference share per bin (max over replicas)."""
        return self._rec(f"ml_reference_{self.name}_bin_share", "max", bins=True)

    @property
    def bins(self) -> str:
        """Number of reference bins."""
        return self._rec(f"ml_reference_{self.name}_bins", "count")

    def counts(self, w: str) -> str:
        """Observations per reference bin in ``w`` (0 for bins without any)."""
        return self._rec(f"ml_{self.name}_bin_observations", f"increase{w}", bins=True)

    def observed(self, w: str) -> str:
        """Observations in ``w``."""
        return self._rec(f"ml_{self.name}_observations", f"increase{w}")

    def share(self, w: str) -> str:
        """Smoothed share per bin in ``w``."""
        return self._rec(f"ml_{self.name}_bin_share", f"ratio_rate{w}", bins=True)

    def test(self, w: str) -> Test:
        """PSI over ``w`` and its threshold."""
        return Test(self._rec(f"ml_{self.name}_drift_psi", f"ratio_rate{w}"),
                    self._rec(f"ml_{self.name}_drift_psi", f"threshold{w}"), self.observed(w))

    def rules(self) -> list[dict[str, Any]]:
        """Reference shares and bin count, then per window counts, shares, PSI and threshold."""
        g = self.group
        on_g = f"on ({', '.join(g)}) group_left ()"
        rules: list[dict[str, Any]] = [
            {"record": self.reference_share, "expr": q.max_by((*g, q.BIN), q.sel(self.reference))},
            {"record": self.bins, "expr": f"count by ({', '.join(g)}) ({self.reference_share})"},
        ]
        dof = f"({self.bins} - 1)"
        for w in self.family.windows:
            counts = q.summed_increase(self.observations, w, (*g, q.BIN))
            test = self.test(w)
            if self.multiple:
                rules.append(_corrected_z_rule(self.family, w, f"count by ({', '.join(MV)}) ({self.bins})"))
                z = f"{ON_MV} {corrected_z(self.family, w)}"
            else:
                z = f"{ON_MODEL} {self.family.z_record(w)}"
            chi2 = f"{dof} * (1 - 2 / (9 * {dof}) + sqrt(2 / (9 * {dof})) * {z}) ^ 3"
            significant = f"{chi2} * (1 / {self.observed(w)} + {_inv_rows(self.observed(w))})"
            rules += [
                {"record": self.counts(w),
                 "expr": f"{counts} and on ({', '.join((*g, q.BIN))}) {self.reference_share}\n"
                         f"or\n0 * {self.reference_share}"},
                {"record": self.observed(w), "expr": f"sum by ({', '.join(g)}) ({self.counts(w)})"},
                {"record": self.share(w),
                 "expr": f"({self.counts(w)} + {PSI_SMOOTHING}) / {on_g} "
                         f"({self.observed(w)} + {PSI_SMOOTHING} * {self.bins})"},
                {"record": test.effect,
                 "expr": f"sum by ({', '.join(g)}) (\n  ({self.share(w)} - {self.reference_share})\n"
                         f"  * ln({self.share(w)} / {self.reference_share})\n)"},
                {"record": test.threshold, "expr": vmax_model(significant, thr("drift_min_psi"))},
            ]
        return rules


FEATURE = Distribution("feature", FAMILIES["feature_drift"], m.FEATURE_BIN_OBSERVATIONS,
                       m.REFERENCE_FEATURE_BIN_SHARE, (*MV, q.FEATURE), "model_version_feature", multiple=True)
PREDICTION = Distribution("prediction", FAMILIES["prediction_drift"], m.PREDICTION_BIN_OBSERVATIONS,
                          m.REFERENCE_PREDICTION_BIN_SHARE, MV, "model_version")
SET_SIZE = Distribution("set_size", FAMILIES["set_size_drift"], m.SET_SIZE_BIN_OBSERVATIONS,
                        m.REFERENCE_SET_SIZE_BIN_SHARE, MV, "model_version")
DISTRIBUTIONS = (FEATURE, PREDICTION, SET_SIZE)


# --- traffic: unseen classes, weak segments --------------------------------------------------------------------------
UNSEEN_CLASS = FAMILIES["unseen_class"]
WEAK_SEGMENT = FAMILIES["weak_segment"]


def predictions(w: str) -> str:
    """Predictions in ``w`` (model, version)."""
    return _r("model_version", "ml_predictions", f"increase{w}")


def unseen_test(w: str) -> Test:
    """Share of predictions of each unseen class over ``w`` and its threshold (by model and version)."""
    return Test(_r("model_version_class", "ml_unseen_class_share", f"ratio_rate{w}"),
                _r("model_version", "ml_unseen_class_share", f"threshold{w}"), predictions(w))


def weak_test(w: str) -> Test:
    """Rise of each weak slice's share of traffic above its evaluation-set share over ``w``, and its threshold."""
    return Test(_r("model_version_weak_segment", "ml_weak_segment_share_rise", f"ratio_rate{w}"),
                _r("model_version_weak_segment", "ml_weak_segment_share_rise", f"threshold{w}"), predictions(w))


WEAK_REFERENCE = _r("model_version_weak_segment", "ml_reference_weak_segment_share", "max")


def weak_share(w: str) -> str:
    """Share of traffic per weak slice over ``w``."""
    return _r("model_version_weak_segment", "ml_weak_segment_share", f"ratio_rate{w}")


def traffic_rules() -> list[dict[str, Any]]:
    """Unseen-class share (null: a rate the evaluation set could have missed, 3 / N) and weak-slice shares
    (null: the slice's share of the evaluation set, binomial error of both)."""
    rules: list[dict[str, Any]] = [
        {"record": WEAK_REFERENCE, "expr": q.max_by((*MV, q.WEAK_SEGMENT), q.sel(m.REFERENCE_WEAK_SEGMENT_SHARE))},
    ]
    for w in UNSEEN_CLASS.windows:
        n = predictions(w)
        unseen, weak = unseen_test(w), weak_test(w)
        rate0 = f"3 * (0 * {n} + {_inv_rows(n)})"
        weak_se = (f"sqrt({WEAK_REFERENCE} * (1 - {WEAK_REFERENCE}) * {ON_MV} (1 / {n} + {_inv_rows(n)}))")
        rules.append(_corrected_z_rule(WEAK_SEGMENT, w, f"count by ({', '.join(MV)}) ({WEAK_REFERENCE})"))
        rules += [
            {"record": n, "expr": q.summed_increase(m.PREDICTIONS, w, MV)},
            {"record": unseen.effect,
             "expr": f"{q.summed_increase(m.UNSEEN_CLASS_PREDICTIONS, w, (*MV, q.CLASS))} / {ON_MV} {n}"},
            {"record": unseen.threshold,
             "expr": vmax_model(f"{rate0} + {_times_z(f'sqrt({rate0} / {n})', UNSEEN_CLASS, w)}",
                                thr("unseen_class_min_share"))},
            {"record": weak_share(w),
             "expr": f"{q.summed_increase(m.WEAK_SEGMENT_PREDICTIONS, w, (*MV, q.WEAK_SEGMENT))} / {ON_MV} {n}"},
            {"record": weak.effect, "expr": f"{weak_share(w)} - {WEAK_REFERENCE}"},
            {"record": weak.threshold,
             "expr": vmax_model(f"{weak_se} * {ON_MV} {corrected_z(WEAK_SEGMENT, w)}",
                                thr("weak_segment_min_increase"))},
        ]
    return rules


# --- labels ----------------------------------------------------------------------------------------------------------
LABEL_COVERAGE = FAMILIES["label_coverage"]
COVERAGE = _r("model_version", "ml_label_coverage", "ratio_rate1d")
COVERAGE_BEFORE = _r("model_version", "ml_label_coverage", "ratio_rate7d_offset1d")
SETTLED = _r("model_version", "ml_settled_predictions", "increase1d")
SETTLED_BEFORE = _r("model_version", "ml_settled_predictions", "increase7d_offset1d")
COVERAGE_DROP = _r("model_version", "ml_label_coverage_drop", "ratio_rate1d")
COVERAGE_DROP_THRESHOLD = _r("model_version", "ml_label_coverage_drop", "threshold1d")
EXPIRING_BEFORE = _r("model_version", "ml_expired_predictions", "increase1d_offset7d")


def _increase(metric: MetricSpec, window: str, offset: str = "") -> str:
    """``sum by (model, version) (increase(metric[window] offset ...))``."""
    shifted = f" offset {offset}" if offset else ""
    return q.sum_by(MV, f"increase({q.sel(metric)}[{window}]{shifted})")


def _settled(window: str, offset: str = "") -> str:
    labeled_ = _increase(m.LABELED_PREDICTIONS, window, offset)
    expired = _increase(m.EXPIRED_PREDICTIONS, window, offset)
    return f"{labeled_} + ({expired} or 0 * {labeled_})"


def coverage_rules() -> list[dict[str, Any]]:
    """Label coverage (labeled / settled) of the last day against the week before it; the comparison is valid once
    predictions expire (a label window after the model's first traffic), hence :data:`EXPIRING_BEFORE`."""
    se = f"sqrt({COVERAGE_BEFORE} * (1 - {COVERAGE_BEFORE}) * (1 / {SETTLED} + 1 / {SETTLED_BEFORE}))"
    return [
        {"record": COVERAGE, "expr": q.label_coverage("1d")},
        {"record": SETTLED, "expr": _settled("1d")},
        {"record": SETTLED_BEFORE, "expr": _settled("7d", "1d")},
        {"record": COVERAGE_BEFORE, "expr": f"{_increase(m.LABELED_PREDICTIONS, '7d', '1d')} / {SETTLED_BEFORE}"},
        {"record": EXPIRING_BEFORE, "expr": _increase(m.EXPIRED_PREDICTIONS, "1d", "7d")},
        {"record": COVERAGE_DROP, "expr": f"{COVERAGE_BEFORE} - {COVERAGE}"},
        {"record": COVERAGE_DROP_THRESHOLD,
         "expr": vmax_model(_times_z(se, LABEL_COVERAGE, "1d"), thr("label_coverage_min_drop"))},
    ]


def recording_rules() -> list[dict[str, Any]]:
    """Every recording rule of the significance tests, in dependency order."""
    rules = reference_rules() + quality_rules() + estimated_rules() + predictions_per_sample_rules()
    for dist in DISTRIBUTIONS:
        rules += dist.rules()
    return rules + traffic_rules() + coverage_rules()


# --- alert expressions -----------------------------------------------------------------------------------------------
def fired(test: Test, minimum: str, *, matchers: str = "", group_left: bool = False, absolute: bool = False) -> str:
    """One window's ``effect > threshold`` with at least the per-model ``minimum`` in the window.

    Args:
        test: The window's recording rules.
        minimum: Threshold name of the smallest window count that may alert.
        matchers: Label matchers restricting the effect (``{ml_metric=~"..."}``).
        group_left: The effect has more labels than the threshold (model and version only).
        absolute: Compare ``abs(effect)`` (two-sided test); the signed effect is the value.
    """
    effect = f"{test.effect}{matchers}"
    compared = f"abs({effect})" if absolute else effect
    cond = f"{compared} > {ON_MV + ' ' if group_left else ''}{test.threshold}"
    if absolute:
        cond = f"{effect} and ({cond})"
    return (f"(\n  {cond}\n  and on ({', '.join(MV)}) "
            f"{test.count} >= {ON_MODEL} {thr(minimum)}\n)")


def any_window(parts: Iterable[str]) -> str:
    """The alert fires when any window's test does (the first listed window's value wins)."""
    return "\nor\n".join(parts)
