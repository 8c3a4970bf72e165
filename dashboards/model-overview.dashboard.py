"""Model overview: is the model still right, what changed, and is it the model or the system.

One model (variables: model, version, segment, quality window, serving service, host). Realized quality where labels
exist, the label-free estimate with its interval everywhere, the evaluation baseline as a dashed line; then labels,
what changed (unseen classes, predictions per sample, prediction mix, drift, weak segments, samples to relabel);
then traffic, latency, errors, CPU and memory of the serving process and host on the same time axis. Version
changes are annotations.
"""

from otel_ml import promql as q
from otel_ml.alerting import significance as sig
from otel_ml.dashboarding import panels as p
from otel_ml.dashboarding.panels import Query
from otel_ml.grafana_uids import FLEET_DASHBOARD_UID, MODEL_DASHBOARD_UID, SELF_DASHBOARD_UID
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import QualityMetric as QM

F = {q.MODEL: "$model", q.VERSION: "$version", q.SEGMENT: "$segment"}
HOST = {q.INSTANCE: "$host"}
SERVICE = {q.JOB: "$service"}
W = "$window"
R = "$__rate_interval"
MV = q.MV
V = "{{ml_model_version}}"
MODEL_FILTER = q.matchers(m.PREDICTIONS, {q.MODEL: "$model"})
RF = q.matchers(None, {q.MODEL: "$model", q.VERSION: "$version"})
"""Matchers of a recording rule (model and version labels only)."""

quality = [
    p.row("Is it still right? Realized (labels) vs estimated (no labels) vs evaluation baseline"),
    p.timeseries("Accuracy", [
        Query(q.accuracy(W, MV, F), f"realized {V}"),
        Query(q.estimated_accuracy(W, MV, F), f"estimated {V}"),
        Query(q.baseline(QM.ACCURACY, MV, F), f"baseline {V}"),
        Query(f"{q.estimated_accuracy(W, MV, F)} - ({q.estimated_accuracy_margin(W, MV, F)})", f"interval low {V}"),
        Query(f"2 * ({q.estimated_accuracy_margin(W, MV, F)})", f"interval width {V}"),
        Query(q.ratio(m.ESTIMATED_PESSIMISTIC_CORRECT_PREDICTIONS, m.ESTIMATED_PREDICTIONS, W, MV, F),
              f"pessimistic {V}"),
        Query(q.ratio(m.ESTIMATED_OPTIMISTIC_CORRECT_PREDICTIONS, m.ESTIMATED_PREDICTIONS, W, MV, F),
              f"optimistic {V}"),
    ], ratio=True, overrides=p.band_style(), description=(
        "Realized accuracy = correct / labeled predictions over the window (only where labels arrived). Estimated "
        "accuracy = mean estimated P(correct) of every prediction (no labels needed); the band is its interval "
        "(sampling sd x1.96 + the estimator's cross-validated error margin; select one version for a clean band). "
        "Pessimistic / optimistic: the estimate with every prediction of unknown correctness (a class the "
        "evaluation set never had, traffic from outside its distribution) counted wrong / right; they equal the "
        "estimate on traffic the evaluation set covers. Dashed: accuracy on the evaluation set.")),
    p.timeseries("Macro F1", [
        Query(q.f1_macro(W, MV, F), f"realized {V}"),
        Query(q.estimated_f1_macro(W, MV, F), f"estimated {V}"),
        Query(q.baseline(QM.F1_MACRO, MV, F), f"baseline {V}"),
    ], ratio=True, description=(
        "Mean over classes of F1 = 2tp/(2tp+fp+fn) from per-class outcomes (realized) and from calibrated class "
        "probabilities (estimated). Dashed: evaluation-set macro F1.")),
    p.timeseries("Regression error (MAE, RMSE)", [
        Query(q.mae(W, MV, F), f"MAE {V}"),
        Query(q.rmse(W, MV, F), f"RMSE {V}"),
        Query(q.estimated_mae(W, MV, F), f"estimated MAE {V}"),
        Query(q.baseline(QM.MAE, MV, F), f"baseline MAE {V}"),
        Query(q.baseline(QM.RMSE, MV, F), f"baseline RMSE {V}"),
        Query(f"{q.estimated_mae(W, MV, F)} - ({q.estimated_mae_margin(W, MV, F)})", f"interval low {V}"),
        Query(f"2 * ({q.estimated_mae_margin(W, MV, F)})", f"interval width {V}"),
    ], overrides=p.band_style(), description=(
        "Regression models: realized MAE and RMSE of labeled predictions, estimated MAE (direct loss estimation, no "
        "labels needed) with its interval as a band (sampling sd x1.96 + the estimator's cross-validated MAE "
        "margin), baselines (dashed).")),
    p.timeseries("Ranking quality (MRR, precision@k)", [
        Query(q.mrr(W, MV, F), f"MRR {V}"),
        Query(q.precision_at_k(W, MV, F), f"precision@{{{{{q.RANKING_K}}}}} {V}"),
        Query(q.baseline(QM.MRR, MV, F), f"baseline MRR {V}"),
        # Reference precision@k is one gauge per k (ml.ranking.k): keep k in the grouping, as the realized line does.
        Query(q.baseline(QM.PRECISION_AT_K, (*MV, q.RANKING_K), F), f"baseline precision@{{{{{q.RANKING_K}}}}} {V}"),
    ], ratio=True, description="Ranking models: mean reciprocal rank and precision@k per configured k, baselines."),
    p.table("Per-class precision / recall / F1", [
        Query(q.class_precision(W, (q.CLASS,), F)),
        Query(q.class_recall(W, (q.CLASS,), F)),
        Query(q.class_f1(W, (q.CLASS,), F)),
        Query(q.summed_increase(m.CLASSIFICATION_OUTCOMES, W, (q.CLASS,), F, **{q.OUTCOME: "~tp|fn"})),
    ], rename={q.CLASS: "class", "Value #A": "precision", "Value #B": "recall", "Value #C": "F1",
               "Value #D": "support"},
        units={"Value #A": "percentunit", "Value #B": "percentunit", "Value #C": "percentunit"},
        color_thresholds={"Value #C": [(None, "red"), (0.5, "orange"), (0.8, "green")]},
        description="Realized per-class metrics over the window (support = labeled samples of the class). "
                    "Multilabel models: one row per label."),
    p.timeseries("Accuracy by segment", [
        Query(q.accuracy(W, (*MV, q.SEGMENT), F), f"realized {{{{{q.SEGMENT}}}}} {V}"),
        Query(q.estimated_accuracy(W, (*MV, q.SEGMENT), F), f"estimated {{{{{q.SEGMENT}}}}} {V}"),
    ], ratio=True, description="Realized and estimated accuracy per segment (ml.segment = dim=value,...)."),
    p.timeseries("ROC-AUC", [
        Query(q.max_by(MV, q.sel(m.CLASSIFICATION_ROC_AUC, "", F)), f"realized {V}"),
        Query(q.max_by(MV, q.sel(m.ESTIMATED_CLASSIFICATION_ROC_AUC, "", F)), f"estimated {V}"),
        Query(q.baseline(QM.ROC_AUC, MV, F), f"baseline {V}"),
    ], ratio=True, width=12, description=(
        "Realized: ROC-AUC of the processor's recent window of joined binary predictions. Estimated (no labels): "
        "expected ROC-AUC of the most recent predictions with scores (binary: positive class; multiclass: "
        "one-vs-rest, macro over classes). Dashed: the evaluation set's.")),
    p.timeseries("Label coverage", [
        Query(q.label_coverage(W, MV, F), f"coverage {V}"),
    ], ratio=True, width=12, description=(
        "labeled / (labeled + expired) predictions settled in the window: the share that got a label before the "
        "label window expired. Low coverage makes realized quality a biased sample.")),
]

labels = [
    p.row("Labels"),
    p.timeseries("Label delay", [
        Query(q.histogram_quantile(0.5, m.LABEL_DELAY, W, MV, F), f"p50 {V}"),
        Query(q.histogram_quantile(0.9, m.LABEL_DELAY, W, MV, F), f"p90 {V}"),
    ], unit="s", width=8, description="Time from prediction to label for joined predictions."),
    p.timeseries("Predictions, labels, joins", [
        Query(q.summed_rate(m.PREDICTIONS, R, (q.MODEL,), F), "predictions/s"),
        Query(q.summed_rate(m.LABELS, R, (q.MODEL,), F), "labels/s"),
        Query(q.summed_rate(m.LABELED_PREDICTIONS, R, (q.MODEL,), F), "labeled (joined)/s"),
        Query(q.summed_rate(m.EXPIRED_PREDICTIONS, R, (q.MODEL,), F), "expired unlabeled/s"),
        Query(q.summed_rate(m.ORPHANED_LABELS, R, (q.MODEL,), F), "orphaned labels/s"),
    ], unit="reqps", width=8, description=(
        "Label flow: labels arriving, joined to their prediction, predictions expiring without label, labels "
        "whose prediction never came (orphaned: usually changed ids).")),
    p.stat("Samples to relabel", [
        Query(q.summed_increase(m.RELABEL_SAMPLES, "$__range", (q.REASON,), F), f"{{{{{q.REASON}}}}}"),
    ], width=8, height=8, description=(
        "Predictions written to the samples-to-relabel sink in the time range, by reason (low confidence, unseen "
        "class, drift): send them to annotators first.")),
]

change = [
    p.row("What changed?"),
    p.table("Unseen classes", [
        Query(f"{q.summed_increase(m.UNSEEN_CLASS_PREDICTIONS, '$__range', (q.CLASS,), F)} > 0"),
    ], rename={q.CLASS: "class", "Value #A": "predictions in range"}, width=8,
        description="Classes predicted that the evaluation set never had, with their count in the time range."),
    p.timeseries("Unseen-class predictions", [
        Query(q.summed_rate(m.UNSEEN_CLASS_PREDICTIONS, R, (q.CLASS,), F), f"{{{{{q.CLASS}}}}}"),
    ], unit="reqps", width=8, description="Rate of predictions of classes unseen in the evaluation set."),
    p.timeseries("Predictions per sample (multilabel)", [
        Query(q.predictions_per_sample(W, MV, F), f"average {V}"),
        Query(q.baseline(QM.LABELS_PER_SAMPLE, MV, F), f"baseline {V}"),
        Query(f"{sig.SET_SIZE.test('1d').effect}{RF}", f"set-size PSI (1d) {V}"),
    ], width=8, description=(
        "Average number of labels predicted per sample against the evaluation set's average, and the PSI of the "
        "set-size distribution over the last day (the alert fires on a significant shift of the mean or PSI).")),
    p.timeseries("Prediction distribution", [
        Query(f"{q.summed_rate(m.PREDICTIONS, R, (q.CLASS,), F)} / ignoring ({q.CLASS}) group_left "
              f"{q.summed_rate(m.PREDICTIONS, R, (), F)}", f"{{{{{q.CLASS}}}}}"),
    ], ratio=True, stacked=True, description="Share of each predicted class in the traffic (stacked)."),
    p.heatmap("Prediction scores", [
        Query(q.summed_rate(m.CLIENT_PREDICTION_SCORE, R, (q.LE,), F, "bucket")),
    ], description="Distribution of prediction scores (binary: positive-class probability; else confidence)."),
    p.timeseries("Predictions of unknown correctness", [
        Query(f"{q.summed_increase(m.ESTIMATED_UNKNOWN_PREDICTIONS, W, (q.REASON,), F)} / ignoring ({q.REASON}) "
              f"group_left {q.summed_increase(m.ESTIMATED_PREDICTIONS, W, (), F)}", f"{{{{{q.REASON}}}}}"),
        Query(f"1 - {q.summed_increase(m.ESTIMATED_PESSIMISTIC_CORRECT_PREDICTIONS, W, (), F)} / "
              f"{q.summed_increase(m.ESTIMATED_CORRECT_PREDICTIONS, W, (), F)}", "estimated novel share"),
    ], ratio=True, width=12, description=(
        "Share of predictions whose correctness the evaluation set cannot vouch for: unseen_class (a class it never "
        "had), out_of_support (inputs farther from it than any of its own rows; about 1 in (reference rows + 1) of "
        "healthy traffic), and the estimated share of traffic from outside its distribution (the discount of the "
        "pessimistic bound). Where these rise, trust labels over the estimate.")),
    p.timeseries("Missing features", [
        Query(f"{q.summed_increase(m.FEATURE_MISSING, W, (q.FEATURE,), F)} / ignoring ({q.FEATURE}) "
              f"group_left {q.summed_increase(m.ESTIMATED_PREDICTIONS, W, (), F)}", f"{{{{{q.FEATURE}}}}}"),
    ], ratio=True, width=12, description=(
        "Share of predictions without a value for a feature of the reference (absent or null; predictions that "
        "carry no feature at all, e.g. sampled out, are not counted). The estimate treats them as missing values; "
        "a feature that disappears is usually a renamed column or a broken pipeline.")),
    p.table("Feature drift", [
        Query(q.max_by((q.FEATURE,), f"{sig.FEATURE.test('1d').effect}{RF}")),
        Query(q.max_by((q.FEATURE,), f"{sig.FEATURE.test('1d').threshold}{RF}")),
    ], rename={q.FEATURE: "feature", "Value #A": "PSI (1d)", "Value #B": "alert threshold"},
        color_thresholds={"Value #A": [(None, "green"), (0.1, "orange"), (0.25, "red")]},
        description="Population stability index of each feature over the last day, from the per-bin counters of "
                    "every replica, against its reference; the alert fires above the threshold (the larger of "
                    "drift_min_psi and what is significant at the day's volume)."),
    p.timeseries("Feature and prediction drift over time", [
        Query(q.max_by((q.FEATURE,), f"{sig.FEATURE.test('1d').effect}{RF}"), f"{{{{{q.FEATURE}}}}}"),
        Query(q.max_by((), f"{sig.PREDICTION.test('1d').effect}{RF}"), "predictions"),
        Query(q.max_by((), f"{sig.SET_SIZE.test('1d').effect}{RF}"), "labels per sample"),
    ], description="PSI over the last day: a step is usually a pipeline change, a slope a changing world."),
    p.timeseries("Share of traffic in weak segments", [
        Query(f"{q.summed_increase(m.WEAK_SEGMENT_PREDICTIONS, W, (q.WEAK_SEGMENT,), F)} / ignoring "
              f"({q.WEAK_SEGMENT}) group_left {q.summed_increase(m.PREDICTIONS, W, (), F)}",
              f"{{{{{q.WEAK_SEGMENT}}}}}"),
    ], ratio=True, stacked=True, description=(
        "Share of predictions falling in slices where the model was weak on its evaluation set: more traffic "
        "there means lower quality with an unchanged model.")),
    p.timeseries("Feature distribution (reference bins)", [
        Query(f"{q.summed_increase(m.FEATURE_BIN_OBSERVATIONS, W, (q.FEATURE, q.BIN), F)} / ignoring ({q.BIN}) "
              f"group_left {q.summed_increase(m.FEATURE_BIN_OBSERVATIONS, W, (q.FEATURE,), F)}",
              f"{{{{{q.FEATURE}}}}} {{{{{q.BIN}}}}}"),
    ], ratio=True, description="Share of observations per reference bin of each feature over the window."),
]

system = [
    p.row("Is it the model or the system? (same time axis)"),
    p.timeseries("Request rate", [
        Query(q.summed_rate(m.CLIENT_INFERENCE_DURATION, R, MV, F, "count"), f"calls/s {V}"),
        Query(q.summed_rate(m.PREDICTIONS, R, MV, F), f"predictions/s {V}"),
    ], unit="reqps", width=8, description="Instrumented inference calls (a batch counts once) and predictions."),
    p.timeseries("Latency", [
        Query(q.histogram_quantile(0.5, m.CLIENT_INFERENCE_DURATION, R, MV, F), f"p50 {V}"),
        Query(q.histogram_quantile(0.95, m.CLIENT_INFERENCE_DURATION, R, MV, F), f"p95 {V}"),
        Query(q.histogram_quantile(0.99, m.CLIENT_INFERENCE_DURATION, R, MV, F), f"p99 {V}"),
    ], unit="s", width=8, description="Inference latency quantiles from the client histogram (all replicas)."),
    p.timeseries("Error rate", [
        Query(q.inference_error_ratio(R, MV, F), f"error ratio {V}"),
        Query(q.summed_rate(m.CLIENT_INFERENCE_ERRORS, R, (q.ERROR_TYPE,), F), f"{{{{{q.ERROR_TYPE}}}}}/s"),
    ], width=8, description="Share of inference calls that raised, and errors per second by exception type."),
    p.timeseries("CPU of the serving process", [
        Query(q.process_cpu(R, SERVICE), "{{job}} {{instance}}"),
    ], unit="short", width=6, description=(
        "CPU cores used by the serving processes (process.cpu.time from the app's OTel system-metrics "
        "instrumentation; service = the job of the model's client metrics).")),
    p.timeseries("Memory of the serving process", [
        Query(q.process_memory(SERVICE), "{{job}} {{instance}}"),
    ], unit="bytes", width=6, description="Resident memory of the serving processes (process.memory.usage)."),
    p.timeseries("Host CPU", [
        Query(q.host_cpu_utilization(R, HOST), "{{instance}}"),
    ], ratio=True, width=6, description="Busy share of all logical CPUs (collector hostmetrics, system.cpu.time)."),
    p.timeseries("Host memory used", [
        Query(q.host_memory_used(HOST), "{{instance}}"),
    ], unit="bytes", width=6, description="Memory in use on the host (collector hostmetrics, system.memory.usage)."),
]

_versions = f"group by ({q.MODEL}, {q.VERSION}) ({q.sel(m.PREDICTIONS, '', {q.MODEL: '$model'})}"

dashboard = p.dashboard(
    "otel-ml / Model overview", MODEL_DASHBOARD_UID,
    description=__doc__.splitlines()[0],
    panels=[*quality, *labels, *change, *system],
    variables=[
        p.query_variable("model", "Model", f"label_values({q.series(m.PREDICTIONS)}, {q.MODEL})"),
        p.query_variable("version", "Version",
                         f"label_values({q.series(m.PREDICTIONS)}{MODEL_FILTER}, {q.VERSION})",
                         multi=True, include_all=True),
        p.query_variable("segment", "Segment",
                         f"label_values({q.series(m.PREDICTIONS)}{MODEL_FILTER}, {q.SEGMENT})",
                         multi=True, include_all=True),
        p.custom_variable("window", "Quality window", ["15m", "1h", "6h", "1d"], "1h"),
        p.query_variable("service", "Serving service",
                         f"label_values({q.series(m.CLIENT_INFERENCE_DURATION, 'count')}"
                         f"{q.matchers(m.CLIENT_INFERENCE_DURATION, {q.MODEL: '$model'})}, {q.JOB})",
                         multi=True, include_all=True),
        p.query_variable("host", "Host", f"label_values({q.HOST_MEMORY_USAGE}, {q.INSTANCE})",
                         multi=True, include_all=True),
    ],
    annotations=[
        p.annotation("Version changes",
                     f"{_versions}) unless {_versions} offset 5m)",
                     f"version {{{{{q.VERSION}}}}} starts serving", "blue"),
        p.annotation("Alerts firing", f'ALERTS{{alertstate="firing", {q.MODEL}=~"$model"}}',
                     "{{alertname}} ({{severity}})", "red"),
    ],
    links=[p.link("Fleet overview", FLEET_DASHBOARD_UID, keep_vars=False),
           p.link("otel-ml self-monitoring", SELF_DASHBOARD_UID, keep_vars=False)],
)
