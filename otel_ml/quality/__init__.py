"""Realized model quality: pure metric functions over sufficient statistics, and mergeable accumulators.

Every metric the processor exports is an additive sum (counts, error sums, per-class tp/fp/fn) so that Prometheus
can window it and sum it across replicas; the functions here compute those sums for a batch, and the accumulators
(``update``/``merge``/``result``) turn them back into the familiar scores (checked against scikit-learn in
``tests/quality``). ROC-AUC does not decompose: :func:`roc_auc_score` is computed over a window.
"""

from otel_ml.quality.auc import roc_auc_score
from otel_ml.quality.classification import ClassificationAccumulator, ClassificationSums, classification_sums
from otel_ml.quality.multilabel import MultilabelAccumulator, MultilabelSums, multilabel_sums
from otel_ml.quality.ranking import (
    RankingAccumulator,
    RankingSums,
    ndcg_at_k,
    precision_at_k,
    ranking_sums,
    reciprocal_rank,
)
from otel_ml.quality.regression import RegressionAccumulator, RegressionSums, regression_sums

__all__ = [
    "ClassificationAccumulator",
    "ClassificationSums",
    "MultilabelAccumulator",
    "MultilabelSums",
    "RankingAccumulator",
    "RankingSums",
    "RegressionAccumulator",
    "RegressionSums",
    "classification_sums",
    "multilabel_sums",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_sums",
    "reciprocal_rank",
    "regression_sums",
    "roc_auc_score",
]
