"""Estimation/drift stage: applies reference artifacts to incoming predictions.

Loaded by the processor when the config has a ``reference:`` section (see :mod:`otel_ml.processor.stage`).

* **Artifacts**: ``<reference.directory>/<model>/<version>/`` for a specific model version, else
  ``<reference.directory>/<model>/default/``. The directory is re-scanned every ``reference.reload_interval``; an
  artifact whose manifest changed is reloaded; one that fails verification (tampered, unknown format version) is
  refused with an error log and the previously loaded one, if any, stays in use.
* **Every accepted prediction** of a model with a reference (labeled or not, so the estimate covers the same traffic
  as ``ml.predictions`` and can be compared with realized quality where labels arrive) adds, per ``ml.segment``:

  - classification: ``ml.estimated.predictions`` (+1), ``ml.estimated.correct_predictions`` (+p),
    ``ml.estimated.correct_variance`` (+p(1-p)), ``ml.estimated.classification.outcomes`` (expected tp/fp/fn per
    class), all with ``ml.estimator`` = the artifact's chosen estimator; and what the estimate does not know:
    ``ml.estimated.unknown_predictions`` (+1 per prediction of unknown correctness, ``ml.reason`` =
    ``unseen_class`` or ``out_of_support``), ``ml.estimated.pessimistic_correct_predictions`` (+0 for an unseen
    class, else +p(1-r), ``r`` the estimated novel share of the last 5000 predictions of the model version, ~0 on
    covered traffic), ``ml.estimated.optimistic_correct_predictions`` (+1 for an unseen class, else
    +p+r(1-p)) and ``ml.estimated.correct_calibration_sd`` (+ the posterior sd of p beyond the reference rows'
    average: thin evidence);
  - multilabel: the same four counters, with P(exact match) as the correctness and expected tp/fp/fn per label
    (``ml.class`` = label), from :class:`~otel_ml.estimation.multilabel.MultilabelEstimator` (scores read from
    ``ml.prediction.scores`` aligned with ``ml.prediction.classes``);
  - regression: ``ml.estimated.predictions``, ``ml.estimated.regression.absolute_error``, ``.squared_error`` and
    ``.absolute_error_variance`` (per-row ``max(E[e^2] - E[|e|]^2, 0)``, the sampling variance of the summed
    absolute error);
  - drift and novelty: ``ml.unseen_class_predictions`` (by class, capped), ``ml.feature.bin.observations`` (per
    feature and reference bin), ``ml.feature.missing`` (per reference feature, predictions without a value for it
    among those that carry features), ``ml.weak_segment.predictions`` (per weak slice the prediction falls in).
* **Ranking** references (no correctness estimator): unseen items (``ml.unseen_class_predictions``, ``ml.class``
  = item id, capped; only when the evaluation set's catalogue was small enough to keep), the item mix
  (``ml.prediction.drift``), ranked-list length against the reference (``ml.multilabel.set_size_drift``) and the
  weak list-length slices; baselines ``mrr`` and ``precision_at_k`` / ``ndcg_at_k`` with ``ml.ranking.k``.
* **Gauges**, refreshed on every tick: ``ml.reference.metric`` (evaluation-set baselines),
  ``ml.estimator.error_margin``, ``ml.estimated.classification.roc_auc`` (the expected ROC AUC of the last
  ``metrics.auc_window`` predictions with scores: binary positive class, multiclass one-vs-rest macro; the
  estimated twin of the realized ``ml.classification.roc_auc`` window, in memory: it refills after a restart),
  and the drift of the last :data:`~otel_ml.drift.detectors.DEFAULT_WINDOW`
  predictions against the reference: ``ml.feature.drift``, ``ml.prediction.drift`` and
  ``ml.multilabel.set_size_drift`` (``psi``, ``jensen_shannon`` and ``ks``; no point below 100 observations).
* **Samples to relabel** (:mod:`.relabel_samples`, written by :mod:`otel_ml.drift.relabel`): per batch and
  reason a few predicted classes the evaluation set never had, the lowest estimated correctness, and predictions
  with a feature outside the reference; counted in ``ml.relabel.samples``.

Interval in PromQL (any window, summed over replicas)::

    n    = increase(ml_estimated_predictions_total[w])
    est  = increase(ml_estimated_correct_predictions_total[w]) / n
    noise = 1.645 * sqrt(increase(ml_estimated_correct_variance_total[w])) / n
           + 1.645 * increase(ml_estimated_correct_calibration_sd_total[w]) / n
           + ml_estimator_error_margin_ratio{ml_metric="accuracy"}
    half = noise
           + 0.5 * abs(est - ml_reference_metric_ratio{ml_metric="accuracy"})
           + 0.25 * avg(ml_feature_drift_ratio{ml_drift_method="jensen_shannon"})
    lower = min(est - half, increase(ml_estimated_pessimistic_correct_predictions_total[w]) / n - noise)
    upper = max(est + half, increase(ml_estimated_optimistic_correct_predictions_total[w]) / n + noise)

Regression (estimated MAE and its band)::

    mae  = increase(ml_estimated_regression_absolute_error_total[w]) / increase(ml_estimated_predictions_total[w])
    half = 1.645 * sqrt(increase(ml_estimated_regression_absolute_error_variance_total[w]))
             / increase(ml_estimated_predictions_total[w])
           + ml_estimator_error_margin_ratio{ml_metric="mae"}
           + 0.5 * abs(mae - ml_reference_metric_ratio{ml_metric="mae"})
           + 0.25 * avg(ml_feature_drift_ratio{ml_drift_method="jensen_shannon"})
                  * ml_reference_metric_ratio{ml_metric="mae"}

(1.645, 0.5 and 0.25 are :data:`otel_ml.estimation.estimate.Z`, :data:`~otel_ml.estimation.estimate.SHIFT_ALLOWANCE` and
:data:`~otel_ml.estimation.estimate.DRIFT_ALLOWANCE`; the drift gauge covers the last 5000 predictions rather than the
PromQL window, an approximation.)

Modules (one job each): :mod:`.stage` (the stage's hooks and :func:`create_stage`), :mod:`.artifacts` (finding,
loading and reloading artifacts; the drift state of the artifact in use), :mod:`.correctness` (per-batch estimation
counters), :mod:`.novelty` (unseen classes, feature bins, drift windows and gauges), :mod:`.weak_segments`
(weak-slice counters), :mod:`.relabel_samples` (samples to relabel), :mod:`.frame` (batch -> the estimator's
DataFrame). ``otel_ml.processor.stages.estimation:create_stage`` is the factory string configs reference.
"""

from otel_ml.processor.stages.estimation.stage import EstimationStage, create_stage

__all__ = ["EstimationStage", "create_stage"]
