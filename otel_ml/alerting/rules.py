"""Prometheus recording and alerting rules of otel-ml, built from the semantic conventions.

Recording rules are named ``level:metric:operations`` (Prometheus naming practice): the level lists the labels kept
(``model_version`` = ``ml_model_name`` + ``ml_model_version``), the metric is the otel-ml quantity, the operations
say how it was computed (``ratio_rate1h``: a ratio of sums of ``increase`` over 1h). The same builders
(:mod:`otel_ml.promql`) feed the dashboards, so a panel and its alert compute the same number.

Every alert carries ``severity`` (``critical`` pages, ``warning`` opens a ticket or posts to chat), a ``summary``, a
``description`` with the value, a ``runbook_url`` pointing at its section of ``alerts/README.md`` and a ``dashboard``
link to the model overview with the model and version preselected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from otel_ml import promql as q
from otel_ml.alerting import significance as sig
from otel_ml.alerting.thresholds import LATENCY_SLO_SECONDS, THRESHOLDS, ThresholdConfig, format_number
from otel_ml.alerting.thresholds import promql_regex_escape as _escape
from otel_ml.grafana_uids import MODEL_DASHBOARD_UID, SELF_DASHBOARD_UID
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import FailReason, OverflowReason, RefuseReason

QUALITY_WINDOW = "1h"
"""Window of the realized and estimated quality ratios the dashboards draw (the alerts test their own windows:
:mod:`otel_ml.alerting.significance`)."""
SLO_WINDOWS = ("5m", "30m", "1h", "6h")
"""Windows of the multi-window, multi-burn-rate SLO alerts (Google SRE workbook, chapter 5)."""
FAST_BURN = 14.4
"""Burn rate that spends 2% of a 30-day budget in 1h: pages (5m and 1h windows)."""
SLOW_BURN = 6.0
"""Burn rate that spends 5% of a 30-day budget in 6h: tickets (30m and 6h windows)."""

MV = q.MV
_J = q.JOB


def _r(level: str, metric: str, operations: str) -> str:
    return f"{level}:{metric}:{operations}"


# --- recording rule names ------------------------------------------------------------------------------------------
ACCURACY = _r("model_version", "ml_accuracy", "ratio_rate1h")
F1_MACRO = _r("model_version", "ml_f1_macro", "ratio_rate1h")
MAE = _r("model_version", "ml_mae", "ratio_rate1h")
RMSE = _r("model_version", "ml_rmse", "ratio_rate1h")
MRR = _r("model_version", "ml_mrr", "ratio_rate1h")
LABELED_1H = _r("model_version", "ml_labeled_predictions", "increase1h")
EST_ACCURACY = _r("model_version", "ml_estimated_accuracy", "ratio_rate1h")
EST_ACCURACY_MARGIN = _r("model_version", "ml_estimated_accuracy_margin", "ratio_rate1h")
EST_F1_MACRO = _r("model_version", "ml_estimated_f1_macro", "ratio_rate1h")
EST_MAE = _r("model_version", "ml_estimated_mae", "ratio_rate1h")
ESTIMATED_1H = sig.estimated("1h")
REFERENCE = sig.REFERENCE
LABEL_COVERAGE = sig.COVERAGE
LABELS_6H = _r("model", "ml_labels", "increase6h")
PREDICTIONS_6H = _r("model", "ml_predictions", "increase6h")
UNKNOWN_SHARE = _r("model_version_reason", "ml_estimated_unknown_share", "ratio_rate1h")
FEATURE_MISSING_SHARE = _r("model_version_feature", "ml_feature_missing_share", "ratio_rate1h")
PREDICTIONS_PER_SAMPLE = sig.predictions_per_sample("1h")
WEAK_SHARE_1H = _r("model_version", "ml_weak_segment_share", "ratio_rate1h")
FEATURE_DRIFT = _r("model_version_feature_method", "ml_feature_drift", "max")
DROPPED_RATIO = _r("model", "ml_client_events_dropped", "ratio_rate15m")
REJECTED_RATIO = _r("job_reason", "ml_processor_records_rejected", "ratio_rate15m")
EXPORT_FAILURES = _r("job", "ml_processor_export_failures", "increase15m")
STORE_ERRORS = _r("job_reason", "ml_processor_store_errors", "increase2m")
STORE_QUARANTINED = _r("job", "ml_processor_store_quarantined", "increase1h")
CARDINALITY_OVERFLOW = _r("job_model_key_reason", "ml_processor_attribute_overflow", "increase1h")
FEATURES_DROPPED = _r("job_reason", "ml_processor_features_dropped", "increase15m")


def slow_ratio(window: str) -> str:
    """Recording rule: share of inferences slower than the model's latency SLO threshold."""
    return _r("model_version", "ml_inference_slow", f"ratio_rate{window}")


def error_ratio(window: str) -> str:
    """Recording rule: share of inferences that raised."""
    return _r("model_version", "ml_inference_errors", f"ratio_rate{window}")


def recording_rules(config: ThresholdConfig) -> list[dict[str, Any]]:
    """The otel-ml recording rules (ratios over sums across processor replicas): the significance tests'
    (:mod:`otel_ml.alerting.significance`), then the dashboards' and the serving alerts'."""
    w = QUALITY_WINDOW
    rules: list[dict[str, Any]] = [*sig.recording_rules(),
        {"record": ACCURACY, "expr": q.accuracy(w)},
        {"record": F1_MACRO, "expr": q.f1_macro(w)},
        {"record": MAE, "expr": q.mae(w)},
        {"record": RMSE, "expr": q.rmse(w)},
        {"record": MRR, "expr": q.mrr(w)},
        {"record": LABELED_1H, "expr": q.summed_increase(m.LABELED_PREDICTIONS, w, MV)},
        {"record": EST_ACCURACY, "expr": q.estimated_accuracy(w)},
        {"record": EST_ACCURACY_MARGIN, "expr": q.estimated_accuracy_margin(w)},
        {"record": EST_F1_MACRO, "expr": q.estimated_f1_macro(w)},
        {"record": EST_MAE, "expr": q.estimated_mae(w)},
        {"record": LABELS_6H, "expr": q.summed_increase(m.LABELS, "6h", (q.MODEL,))},
        {"record": PREDICTIONS_6H, "expr": q.summed_increase(m.PREDICTIONS, "6h", (q.MODEL,))},
        {"record": UNKNOWN_SHARE,
         "expr": f"{q.summed_increase(m.ESTIMATED_UNKNOWN_PREDICTIONS, w, (*MV, q.REASON))} / ignoring ({q.REASON}) "
                 f"group_left {q.summed_increase(m.ESTIMATED_PREDICTIONS, w, MV)}"},
        {"record": FEATURE_MISSING_SHARE,
         "expr": f"{q.summed_increase(m.FEATURE_MISSING, w, (*MV, q.FEATURE))} / ignoring ({q.FEATURE}) "
                 f"group_left {q.summed_increase(m.ESTIMATED_PREDICTIONS, w, MV)}"},
        {"record": WEAK_SHARE_1H, "expr": q.weak_segment_share(w)},
        {"record": FEATURE_DRIFT, "expr": q.max_by((*MV, q.FEATURE, q.DRIFT_METHOD), q.sel(m.FEATURE_DRIFT))},
        {"record": DROPPED_RATIO, "expr": q.dropped_event_ratio("15m")},
        {"record": REJECTED_RATIO,
         "expr": f"{q.summed_increase(m.PROCESSOR_RECORDS_REJECTED, '15m', (_J, q.REASON))} / ignoring ({q.REASON})"
                 f" group_left {q.summed_increase(m.PROCESSOR_RECORDS_RECEIVED, '15m', (_J,))}"},
        {"record": EXPORT_FAILURES, "expr": q.summed_increase(m.PROCESSOR_EXPORT_FAILURES, "15m", (_J,))},
        {"record": STORE_ERRORS, "expr": q.summed_increase(m.PROCESSOR_STORE_ERRORS, "2m", (_J, q.REASON))},
        {"record": STORE_QUARANTINED, "expr": q.summed_increase(m.PROCESSOR_STORE_QUARANTINED, "1h", (_J,))},
        # values folded because a cap is full or a metric reached its series limit (not `admission`: a new value
        # waiting for its sightings, which real values pass within minutes and junk never does)
        {"record": CARDINALITY_OVERFLOW,
         "expr": q.summed_increase(m.PROCESSOR_ATTRIBUTE_OVERFLOW, "1h", (_J, q.MODEL, q.ATTRIBUTE_KEY, q.REASON),
                                   {q.REASON: f"{OverflowReason.LIMIT}|{OverflowReason.SERIES}"})},
        {"record": FEATURES_DROPPED, "expr": q.summed_increase(m.PROCESSOR_FEATURES_DROPPED, "15m", (_J, q.REASON))},
    ]
    # The latency SLO threshold picks a histogram bucket: one rule per distinct bound (default models, overrides).
    overrides = config.overridden(LATENCY_SLO_SECONDS.name)
    default_le = format_number(config.defaults[LATENCY_SLO_SECONDS.name])
    others = {q.MODEL: "!" + "|".join(_escape(x) for x in overrides)} if overrides else {}
    for window in SLO_WINDOWS:
        parts = [q.inference_slow_ratio(window, format_number(seconds), MV, {q.MODEL: _escape(model)})
                 for model, seconds in overrides.items()]
        parts.append(q.inference_slow_ratio(window, default_le, MV, others))
        rules.append({"record": slow_ratio(window), "expr": "\nor\n".join(f"({p})" for p in parts)})
        rules.append({"record": error_ratio(window), "expr": q.inference_error_ratio(window)})
    return rules


# --- alerts --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertSpec:
    """One alerting rule.

    Attributes:
        name: Alert name (``alertname``); its lower-cased form is the runbook anchor in ``alerts/README.md``.
        expr: PromQL; returns one series per firing instance, whose value is the one the description shows.
        for_: How long the condition must hold before the alert fires.
        severity: ``critical`` (page) or ``warning`` (ticket / chat).
        summary: One line, Go-template with ``$labels``.
        description: What is wrong, with the value (``$value``) and what it is compared with.
        dashboard: uid of the dashboard the alert links to.
        per_model: Whether the alert is about one model (its dashboard link preselects the model and version).
        extra_labels: Labels added to the alert (e.g. ``slo``).
        causes: Whether the Prometheus description lists the model's cause alerts firing now (a template query).
        keep_firing_for: How long the alert keeps firing after its condition stopped holding (hysteresis: a test
            hovering around its threshold pages once, not at every crossing); empty: not at all.
    """

    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    dashboard: str = MODEL_DASHBOARD_UID
    per_model: bool = True
    extra_labels: dict[str, str] = field(default_factory=dict)
    causes: bool = False
    keep_firing_for: str = ""


def _thr(name: str) -> str:
    return THRESHOLDS[name].record


def _tag(record: str, metric: str) -> str:
    return f'label_replace({record}, "{q.METRIC}", "{metric}", "", "")'


_MODEL_LABELS = "{{ $labels.ml_model_name }} {{ $labels.ml_model_version }}"
_ON_MODEL = f"on ({q.MODEL}) group_left ()"
_ON_MV = f"on ({q.MODEL}, {q.VERSION})"


def _slo_burn(name: str, slo: str, bad: str, ratio: Callable[[str], str], objective: str,
              severity: str, burn: float, windows: tuple[str, str], for_: str) -> AlertSpec:
    budget = f"({format_number(burn)} * (1 - {_thr(objective)}))"
    long_w, short_w = windows
    return AlertSpec(
        name, f"{ratio(long_w)} > {_ON_MODEL} {budget}\nand\n{ratio(short_w)} > {_ON_MODEL} {budget}",
        for_, severity,
        f"Model {_MODEL_LABELS} burns its {slo} SLO budget {format_number(burn)}x too fast",
        f"{{{{ $value | humanizePercentage }}}} of the inferences of {_MODEL_LABELS} {bad} over the last {long_w} "
        f"(and still over the last {short_w}): at this rate the 30-day budget of the {slo} SLO is spent in "
        f"{720 / burn:.0f}h.",
        extra_labels={"slo": slo, "window": long_w})


def _slo_alerts() -> list[AlertSpec]:
    latency = ("MLModelLatencyBudgetBurn", "latency", "were slower than the SLO threshold", slow_ratio,
               "latency_slo_objective")
    errors = ("MLModelErrorBudgetBurn", "error-rate", "raised an error", error_ratio, "error_slo_objective")
    return [_slo_burn(*slo, "critical", FAST_BURN, ("1h", "5m"), "2m") if fast
            else _slo_burn(*slo, "warning", SLOW_BURN, ("6h", "30m"), "15m")
            for slo in (latency, errors) for fast in (True, False)]


REFUSING = q.summed_rate(m.PROCESSOR_REQUESTS_REFUSED, "5m", (_J, q.REASON),
                         {q.REASON: f"!{RefuseReason.SHUTTING_DOWN}"})
"""Retryable refusals per second (refusals while shutting down are expected and left out)."""
INTERNAL_ERRORS = q.summed_increase(m.PROCESSOR_REQUESTS_FAILED, "15m", (_J, q.RECEIVER),
                                    {q.REASON: FailReason.INTERNAL_ERROR})
"""Requests failed on an unexpected error in the last 15 minutes."""


_CAUSES = ("MLModelFeatureDrift", "MLModelPredictionDrift", "MLModelPredictionsPerSampleShift", "MLModelUnseenClass",
           "MLModelWeakSegmentTrafficRising")
"""Alerts that name a cause of a quality drop (their text says which); quality alerts list the ones firing."""
_CAUSE_TEMPLATE = (
    " Likely causes (cause alerts firing now for this model): {{ with printf `ALERTS{alertstate=\"firing\","
    "ml_model_name=\"%s\",alertname=~\"" + "|".join(_CAUSES) + "\"}` $labels.ml_model_name | query }}"
    "{{ range . }}{{ .Labels.alertname }}{{ with .Labels.ml_feature_name }} ({{ . }}){{ end }}"
    "{{ with .Labels.ml_weak_segment }} ({{ . }}){{ end }}{{ with .Labels.ml_class }} ({{ . }}){{ end }}; "
    "{{ end }}{{ else }}none; look for a new model version, a labeling change or inputs the evaluation set does "
    "not cover.{{ end }}")
"""Appended to the quality alerts' descriptions in the Prometheus rule file (Grafana has no ``query``)."""
_SIGNIFICANT = "larger than {minimum} and significant at the window's volume"


def _windows(tests: list[str]) -> str:
    return sig.any_window(tests)


KEEP_FIRING = "6h"
"""Hysteresis of the statistical alerts: a test of a day-long window hovering around its threshold would page at
every crossing; once firing, an alert stays firing until its condition has been false for this long."""
STATISTICAL = frozenset({"MLModelQualityBelowBaseline", "MLModelErrorAboveBaseline", "MLModelEstimatedQualityDrop",
                         "MLModelUnseenClass", "MLModelPredictionsPerSampleShift", "MLModelFeatureDrift",
                         "MLModelPredictionDrift", "MLModelWeakSegmentTrafficRising", "MLModelLabelCoverageLow"})
"""The alerts whose thresholds are significance tests (:mod:`otel_ml.alerting.significance`)."""


def alert_specs(config: ThresholdConfig) -> list[AlertSpec]:
    """Every otel-ml alert, in the order of ``alerts/README.md``."""
    return [replace(s, keep_firing_for=KEEP_FIRING) if s.name in STATISTICAL else s for s in _alert_specs(config)]


def _alert_specs(config: ThresholdConfig) -> list[AlertSpec]:
    good = f'{{{q.METRIC}=~"{"|".join(sig.HIGHER_IS_BETTER)}"}}'
    bad = f'{{{q.METRIC}=~"{"|".join(sig.LOWER_IS_BETTER)}"}}'
    quality = _windows([sig.fired(sig.quality_test(w), "min_labeled_predictions", matchers=good)
                        for w in sig.QUALITY.windows])
    errors = _windows([sig.fired(sig.quality_test(w), "min_labeled_predictions", matchers=bad)
                       for w in sig.QUALITY.windows])
    estimated = _windows([sig.fired(sig.estimated_test(w), "min_predictions")
                          for w in sig.ESTIMATED_QUALITY.windows])
    per_sample = _windows(
        [sig.fired(sig.predictions_per_sample_test(w), "min_predictions", absolute=True)
         for w in sig.PREDICTIONS_PER_SAMPLE.windows]
        + [f"{sig.predictions_per_sample_test(w).effect}\nand on ({q.MODEL}, {q.VERSION})\n"
           f"{sig.fired(sig.SET_SIZE.test(w), 'min_predictions')}" for w in sig.SET_SIZE.family.windows])
    feature = _windows([sig.fired(sig.FEATURE.test(w), "min_predictions") for w in sig.FEATURE.family.windows])
    prediction = _windows([sig.fired(sig.PREDICTION.test(w), "min_predictions")
                           for w in sig.PREDICTION.family.windows])
    unseen = _windows([sig.fired(sig.unseen_test(w), "min_predictions", group_left=True)
                       for w in sig.UNSEEN_CLASS.windows])
    weak = _windows([sig.fired(sig.weak_test(w), "min_predictions") for w in sig.WEAK_SEGMENT.windows])
    enough_estimates = f"{_ON_MV} ({ESTIMATED_1H} >= {_ON_MODEL} {_thr('min_predictions')})"
    coverage_drop = (f"{sig.COVERAGE_DROP} > {sig.COVERAGE_DROP_THRESHOLD}\n"
                     f"  and on ({q.MODEL}, {q.VERSION}) {sig.EXPIRING_BEFORE} > 0")
    expected_labels = f"{q.summed_increase(m.LABELS, '7d', (q.MODEL,)).replace('[7d])', '[7d] offset 6h)')} / 28"
    return [
        AlertSpec(
            "MLModelQualityBelowBaseline", quality, "30m", "critical",
            f"Realized {{{{ $labels.ml_metric }}}} of {_MODEL_LABELS} is below its evaluation baseline",
            f"Realized {{{{ $labels.ml_metric }}}} of {_MODEL_LABELS} is {{{{ $value | printf \"%.3f\" }}}} below "
            "its evaluation-set baseline (last day or week of labels): "
            + _SIGNIFICANT.format(minimum="quality_min_effect") + ".",
            causes=True),
        AlertSpec(
            "MLModelErrorAboveBaseline", errors, "30m", "critical",
            f"Realized {{{{ $labels.ml_metric }}}} of {_MODEL_LABELS} is above its evaluation baseline",
            f"Realized {{{{ $labels.ml_metric }}}} of {_MODEL_LABELS} is {{{{ $value | printf \"%.4g\" }}}} above "
            "its evaluation-set baseline (last day or week of labels): "
            + _SIGNIFICANT.format(minimum="error_min_effect (relative)") + ".",
            causes=True),
        AlertSpec(
            "MLModelEstimatedQualityDrop", estimated, "30m", "critical",
            f"Estimated {{{{ $labels.ml_metric }}}} of {_MODEL_LABELS} dropped (no labels needed)",
            f"The label-free estimate of {{{{ $labels.ml_metric }}}} for {_MODEL_LABELS} is "
            "{{ $value | printf \"%.3f\" }} below the evaluation-set baseline (last hour or day of predictions): "
            + _SIGNIFICANT.format(minimum="estimated_quality_min_effect")
            + ". Labels, when they arrive, will confirm or refute it.",
            causes=True),
        AlertSpec(
            "MLModelUnseenClass", unseen, "0m", "warning",
            f"Model {_MODEL_LABELS} predicts class {{{{ $labels.ml_class }}}} unseen in its evaluation set",
            f"{{{{ $value | humanizePercentage }}}} of the predictions of {_MODEL_LABELS} over the last hour or day "
            "were of class {{ $labels.ml_class }}, which the evaluation set never had: more than "
            "unseen_class_min_share and than a rate the evaluation set could have missed. Its quality there is "
            "unknown and the estimate cannot see it: likely a new class in the input (a new product, language or "
            "topic) or a renamed class."),
        AlertSpec(
            "MLModelUnknownCorrectness",
            f"{UNKNOWN_SHARE} > {_ON_MODEL} {_thr('unknown_correctness_share')}\nand {enough_estimates}",
            "30m", "warning",
            f"Many predictions of {_MODEL_LABELS} have unknown correctness ({{{{ $labels.ml_reason }}}})",
            f"{{{{ $value | humanizePercentage }}}} of the predictions of {_MODEL_LABELS} over the last hour have "
            "unknown correctness ({{ $labels.ml_reason }}: a class the evaluation set never had, or inputs farther "
            "from it than any of its rows): the estimate cannot vouch for them; its pessimistic bound counts them "
            "wrong."),
        AlertSpec(
            "MLModelFeatureMissing",
            f"{FEATURE_MISSING_SHARE} > {_ON_MODEL} {_thr('feature_missing_share')}\nand {enough_estimates}",
            "30m", "warning",
            f"Feature {{{{ $labels.ml_feature_name }}}} of {_MODEL_LABELS} is missing from the traffic",
            f"{{{{ $value | humanizePercentage }}}} of the predictions of {_MODEL_LABELS} over the last hour came "
            "without a value for feature {{ $labels.ml_feature_name }}, which the reference has: the estimate treats "
            "it as missing (renamed column, broken pipeline, changed client?)."),
        AlertSpec(
            "MLModelPredictionsPerSampleShift", per_sample, "30m", "warning",
            f"Model {_MODEL_LABELS} predicts a different number of labels per sample than on its evaluation set",
            f"The average number of labels predicted per sample by {_MODEL_LABELS} changed by "
            "{{ $value | humanizePercentage }} from the evaluation set over the last hour or day (positive: more "
            "labels): a significant shift larger than predictions_per_sample_min_effect, or a significant drift of "
            "the set-size distribution. Likely a new model version or decision threshold, or inputs that carry more "
            "(or fewer) topics."),
        AlertSpec(
            "MLModelFeatureDrift", feature, "30m", "warning",
            f"Feature {{{{ $labels.ml_feature_name }}}} of {_MODEL_LABELS} drifted",
            f"The distribution of feature {{{{ $labels.ml_feature_name }}}} for {_MODEL_LABELS} moved away from the "
            "evaluation set: PSI {{ $value | printf \"%.3f\" }} over the last hour or day, above drift_min_psi "
            "and significant for the window's volume. A step usually is an upstream change (unit, default value, "
            "encoding); a trend is the world changing."),
        AlertSpec(
            "MLModelPredictionDrift", prediction, "30m", "warning",
            f"The prediction mix of {_MODEL_LABELS} drifted",
            f"The distribution of the classes (or values) predicted by {_MODEL_LABELS} moved away from the "
            "evaluation set: PSI {{ $value | printf \"%.3f\" }} over the last hour or day, above drift_min_psi and "
            "significant. A symptom: check the cause alerts (feature drift, unseen classes, weak segments, "
            "predictions per sample) and the model version."),
        AlertSpec(
            "MLModelWeakSegmentTrafficRising", weak, "30m", "warning",
            f"More traffic of {_MODEL_LABELS} falls in its weak slice {{{{ $labels.ml_weak_segment }}}}",
            f"The share of predictions of {_MODEL_LABELS} in {{{{ $labels.ml_weak_segment }}}}, a slice where the "
            "model was significantly worse on its evaluation set, exceeds its share of the evaluation set by "
            "{{ $value | humanizePercentage }} of the traffic (last hour or day; more than weak_segment_min_increase "
            "and significant): "
            "expect lower quality even with an unchanged model."),
        AlertSpec(
            "MLModelLabelsStopped",
            f"{PREDICTIONS_6H} > 0\nand on ({q.MODEL}) {LABELS_6H} == 0\n"
            f"and on ({q.MODEL}) {expected_labels} >= {_ON_MODEL} {_thr('labels_stopped_expected')}",
            "30m", "warning",
            "Labels stopped arriving for model {{ $labels.ml_model_name }}",
            "Model {{ $labels.ml_model_name }} made {{ $value | humanize }} predictions in the last 6h but "
            "received no label, although the week before predicts at least labels_stopped_expected in 6h: "
            "realized quality is blind until labels flow again."),
        AlertSpec(
            "MLModelLabelCoverageLow",
            f"{LABEL_COVERAGE}\nand on ({q.MODEL}, {q.VERSION}) (\n  {coverage_drop}\n  or\n  {LABEL_COVERAGE} < "
            f"{_ON_MODEL} {_thr('label_coverage')}\n)",
            "1h", "warning",
            f"Fewer predictions of {_MODEL_LABELS} get a label",
            f"Only {{{{ $value | humanizePercentage }}}} of the predictions of {_MODEL_LABELS} that settled in the "
            "last day got a label before the label window expired: significantly less than the week before (by "
            "more than label_coverage_min_drop), or below the label_coverage floor."),
        *_slo_alerts(),
        AlertSpec(
            "MLInstrumentationDroppingEvents",
            f"{DROPPED_RATIO} > {_ON_MODEL} {_thr('dropped_events_ratio')}",
            "15m", "warning",
            "Instrumentation of model {{ $labels.ml_model_name }} drops events",
            "The instrumentation of {{ $labels.ml_model_name }} dropped {{ $value | humanizePercentage }} of its "
            "prediction and label events over the last 15 minutes: quality metrics see a biased sample.",
            dashboard=SELF_DASHBOARD_UID, per_model=False),
        AlertSpec(
            "MLProcessorRejectingRecords",
            f"{REJECTED_RATIO} > {format_number(config.defaults['processor_reject_ratio'])}",
            "15m", "warning",
            "otel-ml processor {{ $labels.job }} rejects records ({{ $labels.ml_reason }})",
            "{{ $value | humanizePercentage }} of the records received by {{ $labels.job }} over the last 15 minutes "
            "were rejected as malformed ({{ $labels.ml_reason }}); senders see it in OTLP partial_success.",
            dashboard=SELF_DASHBOARD_UID, per_model=False),
        AlertSpec(
            "MLProcessorCardinalityOverflow",
            f"{CARDINALITY_OVERFLOW} > 0",
            "30m", "warning",
            "otel-ml processor {{ $labels.job }} folds {{ $labels.ml_attribute_key }} values of model "
            "{{ $labels.ml_model_name }} into _other ({{ $labels.ml_reason }})",
            "{{ $value | humanize }} values of {{ $labels.ml_attribute_key }} (model {{ $labels.ml_model_name }}) "
            "were mapped to _other by {{ $labels.job }} in the last hour ({{ $labels.ml_reason }}: the cardinality "
            "cap is full, or the metric reached metrics.series_limit): their series are merged.",
            dashboard=SELF_DASHBOARD_UID, per_model=False),
        AlertSpec(
            "MLProcessorDroppingFeatures",
            f"{FEATURES_DROPPED} > 0",
            "15m", "warning",
            "otel-ml processor {{ $labels.job }} drops features beyond its limits ({{ $labels.ml_reason }})",
            "{{ $value | humanize }} features were dropped from accepted predictions by {{ $labels.job }} in the "
            "last 15 minutes ({{ $labels.ml_reason }}, see limits.* of the processor config): drift and estimation "
            "miss them.",
            dashboard=SELF_DASHBOARD_UID, per_model=False),
        AlertSpec(
            "MLProcessorSeriesOverflow",
            f"{q.max_by((_J,), q.sel(m.PROCESSOR_SERIES_OVERFLOW))} > 0",
            "15m", "warning",
            "The OpenTelemetry SDK in otel-ml processor {{ $labels.job }} folds series into otel.metric.overflow",
            "{{ $value | humanize }} series of {{ $labels.job }} were folded by the OpenTelemetry SDK into its "
            "otel.metric.overflow point at the last collection: they are exported without their attributes.",
            dashboard=SELF_DASHBOARD_UID, per_model=False),
        AlertSpec(
            "MLProcessorAuthFailures",
            f"{q.summed_increase(m.PROCESSOR_AUTH_FAILURES, '15m', (_J, q.RECEIVER, q.REASON))}\n"
            f"> {format_number(config.defaults['processor_auth_failures'])}",
            "10m", "warning",
            "otel-ml processor {{ $labels.job }} refuses clients on its {{ $labels.ml_receiver }} endpoint "
            "({{ $labels.ml_reason }})",
            "{{ $value | humanize }} requests or TLS handshakes on the {{ $labels.ml_receiver }} endpoint of "
            "{{ $labels.job }} failed authentication ({{ $labels.ml_reason }}) in the last 15 minutes: a sender with "
            "a missing or wrong token or certificate is losing its data (401 and UNAUTHENTICATED are not retried), "
            "or someone is probing the endpoint.",
            dashboard=SELF_DASHBOARD_UID, per_model=False),
        AlertSpec(
            "MLProcessorRefusingRequests",
            f"{REFUSING} > 0",
            "15m", "warning",
            "otel-ml processor {{ $labels.job }} keeps refusing requests ({{ $labels.ml_reason }})",
            "{{ $labels.job }} has refused {{ $value | humanize }} requests per second for 15 minutes "
            "({{ $labels.ml_reason }}): senders retry, so nothing is lost yet, but their queues grow and the "
            "quality metrics lag.",
            dashboard=SELF_DASHBOARD_UID, per_model=False),
        AlertSpec(
            "MLProcessorInternalErrors",
            f"{INTERNAL_ERRORS} > 0",
            "0m", "warning",
            "otel-ml processor {{ $labels.job }} fails requests with internal errors",
            "{{ $value | humanize }} requests to the {{ $labels.ml_receiver }} endpoint of {{ $labels.job }} failed "
            "with an unexpected error in the last 15 minutes (answered INTERNAL / 500, which senders do not retry: "
            "their data is lost). The processor log has the traceback.",
            dashboard=SELF_DASHBOARD_UID, per_model=False),
        AlertSpec(
            "MLProcessorExportFailing",
            f"{EXPORT_FAILURES} > 0",
            "5m", "warning",
            "otel-ml processor {{ $labels.job }} fails to export its metrics",
            "{{ $value | humanize }} metric exports of {{ $labels.job }} failed in the last 15 minutes: quality "
            "metrics are stale or missing.",
            dashboard=SELF_DASHBOARD_UID, per_model=False),
        AlertSpec(
            # a failure that lasts (errors in every 2-minute window for 5 minutes) pages; a lock held for a few
            # seconds by a backup does not. Senders keep the refused data while their queues last: page early.
            "MLProcessorStoreFailing",
            f"{STORE_ERRORS} > 0",
            "5m", "critical",
            "otel-ml processor {{ $labels.job }}: join store failing ({{ $labels.ml_reason }})",
            "{{ $value | humanize }} join store operations of {{ $labels.job }} failed ({{ $labels.ml_reason }}) in "
            "the last 2 minutes, for 5 minutes: requests are answered UNAVAILABLE and senders are queueing (they "
            "drop data when their queues fill). The store recovers by itself once the cause is fixed.",
            dashboard=SELF_DASHBOARD_UID, per_model=False),
        AlertSpec(
            "MLProcessorStoreQuarantinedRecords",
            f"{STORE_QUARANTINED} > 0",
            "0m", "warning",
            "otel-ml processor {{ $labels.job }} quarantined corrupted store records",
            "{{ $value | humanize }} stored records of {{ $labels.job }} could not be decoded in the last hour and "
            "were moved to the store's quarantine table (they will never join): the disk or filesystem may be "
            "damaging data.",
            dashboard=SELF_DASHBOARD_UID, per_model=False),
    ]


def render_alert(spec: AlertSpec, runbook_url: str, grafana_url: str) -> dict[str, Any]:
    """Prometheus rule-file form of an alert."""
    link = f"{grafana_url.rstrip('/')}/d/{spec.dashboard}"
    if spec.per_model:
        link += "?var-model={{ $labels.ml_model_name }}&var-version={{ $labels.ml_model_version }}"
    rendered: dict[str, Any] = {
        "alert": spec.name,
        "expr": spec.expr,
        "for": spec.for_,
        "labels": {"severity": spec.severity, **spec.extra_labels},
        "annotations": {
            "summary": spec.summary,
            "description": spec.description + (_CAUSE_TEMPLATE if spec.causes else ""),
            "runbook_url": f"{runbook_url}#{spec.name.lower()}",
            "dashboard": link,
        },
    }
    if spec.keep_firing_for:
        rendered["keep_firing_for"] = spec.keep_firing_for
    return rendered


def rule_groups(config: ThresholdConfig, runbook_url: str, grafana_url: str,
                threshold_rules: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole rule file: thresholds, recording rules, alerts."""
    return {"groups": [
        {"name": "otel-ml-thresholds", "rules": threshold_rules},
        {"name": "otel-ml-recording", "rules": recording_rules(config)},
        {"name": "otel-ml-alerts", "rules": [render_alert(s, runbook_url, grafana_url) for s in alert_specs(config)]},
    ]}


__all__ = ["AlertSpec", "alert_specs", "recording_rules", "render_alert", "rule_groups"]

