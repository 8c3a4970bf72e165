"""PromQL builders over the otel-ml semantic conventions.

Every series name comes from :mod:`otel_ml.semconv.prometheus` and every label name from
:func:`otel_ml.semconv.prometheus.label_name`; nothing here spells a metric name. The dashboards
(:mod:`otel_ml.dashboarding`) and the rule generator (:mod:`otel_ml.alerting`) share these builders, so a panel and
the alert about the same quantity compute it the same way.

Conventions:

* Counters from several processor replicas are always aggregated with ``sum by (...)`` before a ratio is formed
  (``increase`` per series, then sum, then divide): a ratio of sums, never a sum or average of ratios.
* Gauges that every replica exports identically (baselines, drift distances) are reduced with ``max by (...)``.
* ``filters`` map a label name to a regular expression (``{"ml_model_name": "$model"}``); a selector only gets the
  filters for labels its metric actually carries, so one filter set fits every metric.

Usage::

    >>> from otel_ml import promql as q
    >>> from otel_ml.semconv import metrics as m
    >>> q.summed_increase(m.LABELED_PREDICTIONS, "1h", q.MV, {q.MODEL: "$model", q.CLASS: "x"})
    'sum by (ml_model_name, ml_model_version) (increase(ml_labeled_predictions_total{ml_model_name=~"$model"}[1h]))'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import Outcome, QualityMetric
from otel_ml.semconv.metrics import MetricSpec
from otel_ml.semconv.prometheus import label_name, series

MODEL = label_name(a.ML_MODEL_NAME)
VERSION = label_name(a.ML_MODEL_VERSION)
SEGMENT = label_name(a.ML_SEGMENT)
CLASS = label_name(a.ML_CLASS)
OUTCOME = label_name(a.ML_OUTCOME)
METRIC = label_name(a.ML_METRIC)
FEATURE = label_name(a.ML_FEATURE_NAME)
DRIFT_METHOD = label_name(a.ML_DRIFT_METHOD)
BIN = label_name(a.ML_BIN)
WEAK_SEGMENT = label_name(a.ML_WEAK_SEGMENT)
ESTIMATOR = label_name(a.ML_ESTIMATOR)
REASON = label_name(a.ML_REASON)
RANKING_K = label_name(a.ML_RANKING_K)
ERROR_TYPE = label_name(a.ERROR_TYPE)
ATTRIBUTE_KEY = label_name(a.ML_ATTRIBUTE_KEY)
RECEIVER = label_name(a.ML_RECEIVER)
LE = "le"
JOB = "job"
INSTANCE = "instance"

MV: tuple[str, ...] = (MODEL, VERSION)
"""The usual grouping: one series per model and version."""

Filters = Mapping[str, str]


def _labels_of(metric: MetricSpec) -> set[str]:
    return {label_name(k) for k in metric.attributes}


def matchers(metric: MetricSpec | None, filters: Filters = {}, **fixed: str) -> str:  # noqa: B006 - read only
    """Label matchers ``{...}`` for ``metric``: regex filters for labels it carries, plus exact ``fixed`` ones.

    Args:
        metric: The metric (``None`` for a non-otel-ml series: every filter applies).
        filters: Label name to regular expression (``!`` first: must not match); ignored for labels the metric
            does not carry.
        **fixed: Label name to exact value (a value starting with ``~`` is a regex, ``!`` a negative match).
    """
    labels = _labels_of(metric) if metric is not None else set(filters)
    parts = [f'{k}!~"{v[1:]}"' if v.startswith("!") else f'{k}=~"{v}"'
             for k, v in sorted(filters.items()) if k in labels]
    for k, v in sorted(fixed.items()):
        if v.startswith("~"):
            parts.append(f'{k}=~"{v[1:]}"')
        elif v.startswith("!"):
            parts.append(f'{k}!="{v[1:]}"')
        else:
            parts.append(f'{k}="{v}"')
    return "{" + ", ".join(parts) + "}" if parts else ""


def sel(metric: MetricSpec, kind: str = "", filters: Filters = {}, **fixed: str) -> str:  # noqa: B006 - read only
    """Selector of an otel-ml series: ``sel(m.LABEL_DELAY, "bucket", {MODEL: "$model"})``."""
    return series(metric, kind) + matchers(metric, filters, **fixed)


def by(labels: Iterable[str]) -> str:
    """``by (a, b)`` clause (empty tuple: no clause, a total)."""
    labels = tuple(labels)
    return f" by ({', '.join(labels)})" if labels else ""


def sum_by(labels: Iterable[str], expr: str) -> str:
    """``sum by (labels) (expr)``."""
    return f"sum{by(labels)} ({expr})"


def max_by(labels: Iterable[str], expr: str) -> str:
    """``max by (labels) (expr)``."""
    return f"max{by(labels)} ({expr})"


def increase(selector: str, window: str) -> str:
    """``increase(selector[window])``."""
    return f"increase({selector}[{window}])"


def rate(selector: str, window: str) -> str:
    """``rate(selector[window])``."""
    return f"rate({selector}[{window}])"


def summed_increase(metric: MetricSpec, window: str, group: Iterable[str], filters: Filters = {},  # noqa: B006
                    kind: str = "", **fixed: str) -> str:
    """``sum by (group) (increase(metric{filters}[window]))``: the windowed count across replicas."""
    return sum_by(group, increase(sel(metric, kind, filters, **fixed), window))


def summed_rate(metric: MetricSpec, window: str, group: Iterable[str], filters: Filters = {},  # noqa: B006
                kind: str = "", **fixed: str) -> str:
    """``sum by (group) (rate(metric{filters}[window]))``: the per-second rate across replicas."""
    return sum_by(group, rate(sel(metric, kind, filters, **fixed), window))


def ratio(numerator: MetricSpec, denominator: MetricSpec, window: str, group: Iterable[str],
          filters: Filters = {}, num_kind: str = "", den_kind: str = "") -> str:  # noqa: B006
    """Ratio of two windowed sums over the same grouping (empty when the denominator has no series)."""
    group = tuple(group)
    return (f"{summed_increase(numerator, window, group, filters, num_kind)} / "
            f"{summed_increase(denominator, window, group, filters, den_kind)}")


def baseline(quality_metric: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Evaluation-set value of a quality metric (``ml.reference.metric{ml.metric=...}``), max over replicas."""
    return max_by(group, sel(m.REFERENCE_METRIC, "", filters, **{METRIC: quality_metric}))


def error_margin(quality_metric: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Cross-validated error margin of the estimator for a quality metric, max over replicas."""
    return max_by(group, sel(m.ESTIMATOR_ERROR_MARGIN, "", filters, **{METRIC: quality_metric}))


# --- realized quality ------------------------------------------------------------------------------------------------
def accuracy(window: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Realized accuracy: correct / labeled predictions in the window."""
    return ratio(m.CORRECT_PREDICTIONS, m.LABELED_PREDICTIONS, window, group, filters)


def _tp(outcomes: MetricSpec, window: str, group: tuple[str, ...], filters: Filters) -> str:
    # A class with fp/fn but no tp yet must count 0 tp, not vanish from the vector: "or 0 * all outcomes".
    return (f"({summed_increase(outcomes, window, group, filters, **{OUTCOME: Outcome.TP})} or "
            f"0 * {summed_increase(outcomes, window, group, filters)})")


def class_precision(window: str, group: Iterable[str] = (*MV, CLASS), filters: Filters = {},  # noqa: B006
                    outcomes: MetricSpec = m.CLASSIFICATION_OUTCOMES) -> str:
    """Per-class precision tp / (tp + fp) (undefined, hence absent, for a class never predicted)."""
    g = tuple(group)
    return (f"{_tp(outcomes, window, g, filters)} / "
            f"{summed_increase(outcomes, window, g, filters, **{OUTCOME: f'~{Outcome.TP}|{Outcome.FP}'})}")


def class_recall(window: str, group: Iterable[str] = (*MV, CLASS), filters: Filters = {},  # noqa: B006
                 outcomes: MetricSpec = m.CLASSIFICATION_OUTCOMES) -> str:
    """Per-class recall tp / (tp + fn) (absent for a class never in the labels)."""
    g = tuple(group)
    return (f"{_tp(outcomes, window, g, filters)} / "
            f"{summed_increase(outcomes, window, g, filters, **{OUTCOME: f'~{Outcome.TP}|{Outcome.FN}'})}")


def class_f1(window: str, group: Iterable[str] = (*MV, CLASS), filters: Filters = {},  # noqa: B006
             outcomes: MetricSpec = m.CLASSIFICATION_OUTCOMES) -> str:
    """Per-class F1 = 2tp / (2tp + fp + fn) = 2tp / (tp + (tp + fp + fn))."""
    g = tuple(group)
    tp = _tp(outcomes, window, g, filters)
    return f"2 * {tp} / ({tp} + {summed_increase(outcomes, window, g, filters)})"


def f1_macro(window: str, group: Iterable[str] = MV, filters: Filters = {},  # noqa: B006
             outcomes: MetricSpec = m.CLASSIFICATION_OUTCOMES) -> str:
    """Macro F1: unweighted mean of the per-class F1 over the classes seen in the window."""
    g = tuple(group)
    return f"avg{by(g)} ({class_f1(window, (*g, CLASS), filters, outcomes)})"


def mae(window: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Realized mean absolute error (regression)."""
    return ratio(m.REGRESSION_ABSOLUTE_ERROR, m.LABELED_PREDICTIONS, window, group, filters)


def rmse(window: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Realized root mean squared error (regression)."""
    return f"sqrt({ratio(m.REGRESSION_SQUARED_ERROR, m.LABELED_PREDICTIONS, window, group, filters)})"


def mrr(window: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Realized mean reciprocal rank (ranking)."""
    return ratio(m.RANKING_RECIPROCAL_RANK, m.LABELED_PREDICTIONS, window, group, filters)


def precision_at_k(window: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Realized precision@k per configured k (ranking)."""
    g = tuple(group)
    return (f"{summed_increase(m.RANKING_PRECISION_AT_K, window, (*g, RANKING_K), filters)} / ignoring ({RANKING_K})"
            f" group_left {summed_increase(m.LABELED_PREDICTIONS, window, g, filters)}")


# --- estimated quality -----------------------------------------------------------------------------------------------
def estimated_accuracy(window: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Estimated accuracy (no labels needed): sum of P(correct) / predictions estimated."""
    return ratio(m.ESTIMATED_CORRECT_PREDICTIONS, m.ESTIMATED_PREDICTIONS, window, group, filters)


def estimated_accuracy_margin(window: str, group: Iterable[str] = MV, filters: Filters = {},  # noqa: B006
                              z: float = 1.96) -> str:
    """Half-width of the estimate's interval: z * sampling sd of the windowed mean, plus the estimator's margin,
    plus z * the mean calibration sd (how little the reference knew about the window's predictions).

    The sampling variance of a sum of independent Bernoulli(p_i) is sum p_i(1-p_i), so the sd of the mean is
    sqrt(sum var) / n. The cross-validated error margin of the estimator and the calibration sd (when exported)
    are added on top. The pessimistic and optimistic bounds (novel traffic) are separate series.
    """
    g = tuple(group)
    n = summed_increase(m.ESTIMATED_PREDICTIONS, window, g, filters)
    sampling = f"{z} * sqrt({summed_increase(m.ESTIMATED_CORRECT_VARIANCE, window, g, filters)}) / {n}"
    calibration = f"{z} * {summed_increase(m.ESTIMATED_CORRECT_CALIBRATION_SD, window, g, filters)} / {n}"
    return (f"({sampling}) + ({error_margin('accuracy', g, filters)} or 0 * ({sampling}))"
            f" + ({calibration} or 0 * ({sampling}))")


def estimated_f1_macro(window: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Estimated macro F1 from the expected per-class outcomes."""
    return f1_macro(window, group, filters, m.ESTIMATED_CLASSIFICATION_OUTCOMES)


def estimated_mae(window: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Estimated mean absolute error (direct loss estimation)."""
    return ratio(m.ESTIMATED_REGRESSION_ABSOLUTE_ERROR, m.ESTIMATED_PREDICTIONS, window, group, filters)


def estimated_mae_margin(window: str, group: Iterable[str] = MV, filters: Filters = {},  # noqa: B006
                         z: float = 1.96) -> str:
    """Half-width of the estimated MAE's interval: z * sampling sd of the windowed mean, plus the estimator's margin.

    ``ml.estimated.regression.absolute_error_variance`` sums the per-prediction variances of the absolute error, so
    the sd of the windowed mean is sqrt(sum var) / n; the cross-validated MAE margin (when exported) is added.
    """
    g = tuple(group)
    sampling = (f"{z} * sqrt({summed_increase(m.ESTIMATED_REGRESSION_ABSOLUTE_ERROR_VARIANCE, window, g, filters)})"
                f" / {summed_increase(m.ESTIMATED_PREDICTIONS, window, g, filters)}")
    return f"({sampling}) + ({error_margin(QualityMetric.MAE, g, filters)} or 0 * ({sampling}))"


# --- labels ----------------------------------------------------------------------------------------------------------
def label_coverage(window: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Share of predictions that got their label: labeled / (labeled + expired) in the window."""
    g = tuple(group)
    labeled = summed_increase(m.LABELED_PREDICTIONS, window, g, filters)
    expired = summed_increase(m.EXPIRED_PREDICTIONS, window, g, filters)
    return f"{labeled} / ({labeled} + ({expired} or 0 * {labeled}))"


def histogram_quantile(q: float, metric: MetricSpec, window: str, group: Iterable[str] = MV,
                       filters: Filters = {}) -> str:  # noqa: B006
    """``histogram_quantile`` of an otel-ml histogram, summed across replicas by ``group`` and ``le``."""
    return f"histogram_quantile({q}, {summed_rate(metric, window, (*tuple(group), LE), filters, 'bucket')})"


# --- prediction mix --------------------------------------------------------------------------------------------------
def predictions_per_sample(window: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Average number of labels predicted per sample (multilabel): histogram _sum / _count."""
    return ratio(m.MULTILABEL_PREDICTED_LABELS, m.MULTILABEL_PREDICTED_LABELS, window, group, filters,
                 num_kind="sum", den_kind="count")


def weak_segment_share(window: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Share of predictions falling in a known weak slice of the evaluation set (all slices together)."""
    return ratio(m.WEAK_SEGMENT_PREDICTIONS, m.PREDICTIONS, window, group, filters)


# --- serving: latency and errors -------------------------------------------------------------------------------------
def inference_slow_ratio(window: str, le: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Share of inference calls slower than the bucket bound ``le`` (the latency SLO's bad events)."""
    g = tuple(group)
    total = summed_increase(m.CLIENT_INFERENCE_DURATION, window, g, filters, "count")
    fast = summed_increase(m.CLIENT_INFERENCE_DURATION, window, g, filters, "bucket", **{LE: le})
    return f"({total} - {fast}) / {total}"


def inference_error_ratio(window: str, group: Iterable[str] = MV, filters: Filters = {}) -> str:  # noqa: B006
    """Share of inference calls that raised (errors / all calls timed by the duration histogram)."""
    g = tuple(group)
    total = summed_increase(m.CLIENT_INFERENCE_DURATION, window, g, filters, "count")
    errors = summed_increase(m.CLIENT_INFERENCE_ERRORS, window, g, filters)
    return f"({errors} or 0 * {total}) / {total}"


def dropped_event_ratio(window: str, group: Iterable[str] = (MODEL,), filters: Filters = {}) -> str:  # noqa: B006
    """Share of events the instrumentation dropped: dropped / (exported + dropped)."""
    g = tuple(group)
    dropped = summed_increase(m.CLIENT_EVENTS_DROPPED, window, g, filters)
    exported = summed_increase(m.CLIENT_EVENTS_EXPORTED, window, g, filters)
    return f"{dropped} / ({dropped} + ({exported} or 0 * {dropped}))"


# --- host and serving process (not otel-ml metrics: see HOST_SERIES) -------------------------------------------------
HOST_CPU_TIME = "system_cpu_time_seconds_total"
"""hostmetrics receiver ``system.cpu.time`` (cpu scraper default; labels ``cpu``, ``state``)."""
HOST_MEMORY_USAGE = "system_memory_usage_bytes"
"""hostmetrics receiver ``system.memory.usage`` (memory scraper default; label ``state``)."""
PROCESS_CPU_TIME = "process_cpu_time_seconds_total"
"""OTel semconv ``process.cpu.time`` of the serving process (Python system-metrics instrumentation or the
hostmetrics ``process`` scraper)."""
PROCESS_MEMORY_USAGE = "process_memory_usage_bytes"
"""OTel semconv ``process.memory.usage`` (resident set size) of the serving process."""
HOST_SERIES: frozenset[str] = frozenset({HOST_CPU_TIME, HOST_MEMORY_USAGE, PROCESS_CPU_TIME, PROCESS_MEMORY_USAGE})
"""The non-otel-ml series the dashboards may reference (explicit allow-list checked by the tests)."""


def host_cpu_utilization(window: str, filters: Filters = {}) -> str:  # noqa: B006
    """Host CPU busy share per host (``instance``): 1 - idle time / all CPU time, over all logical CPUs."""
    f_all = matchers(None, filters)
    f_idle = matchers(None, filters, state="idle")
    return (f"1 - sum by ({INSTANCE}) (rate({HOST_CPU_TIME}{f_idle}[{window}])) / "
            f"sum by ({INSTANCE}) (rate({HOST_CPU_TIME}{f_all}[{window}]))")


def host_memory_used(filters: Filters = {}) -> str:  # noqa: B006
    """Host memory in use (state ``used``) per host."""
    return f"sum by ({INSTANCE}) ({HOST_MEMORY_USAGE}{matchers(None, filters, state='used')})"


def process_cpu(window: str, filters: Filters = {}) -> str:  # noqa: B006
    """CPU cores used by the serving processes, per service (``job``) and instance, all CPU modes together."""
    return f"sum by ({JOB}, {INSTANCE}) (rate({PROCESS_CPU_TIME}{matchers(None, filters)}[{window}]))"


def process_memory(filters: Filters = {}) -> str:  # noqa: B006
    """Resident memory of the serving processes, per service (``job``) and instance."""
    return f"sum by ({JOB}, {INSTANCE}) ({PROCESS_MEMORY_USAGE}{matchers(None, filters)})"
