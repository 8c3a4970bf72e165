"""A real Prometheus scrapes the processor's endpoint; PromQL over the additive counters equals the sklearn oracle."""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import numpy as np
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from sklearn import metrics as skm

from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.prometheus import label_name, prom_name
from tests.processor.conftest import label_event, prediction_event
from tests.processor.procs_helpers import ProcessorProcess
from tests.support import otlp_events as ev
from tests.support.procs import Prometheus, wait_until

pytestmark = pytest.mark.integration
RNG = np.random.default_rng(11)


def test_promql_equals_sklearn(tmp_path: Path) -> None:
    proc = ProcessorProcess(tmp_path, metrics={"ranking_k": [3]}).start()
    prom = Prometheus(tmp_path, {"otel-ml-processor": [proc.scrape_target]}).start()
    try:
        n = 300
        names = ["cat", "dog", "fox"]
        t = [names[i] for i in RNG.integers(0, 3, n)]
        p = [x if RNG.random() < 0.65 else names[RNG.integers(0, 3)] for x in t]
        y = RNG.integers(0, 2, n)
        s = np.clip(np.where(y == 1, RNG.normal(0.6, 0.2, n), RNG.normal(0.4, 0.2, n)), 0, 1)
        yt = RNG.normal(20, 5, n)
        yp = yt + RNG.normal(0.5, 2, n)
        items = [f"i{j}" for j in range(5)]
        ranked = [list(RNG.permutation(items)) for _ in range(n)]
        relevant = [[x for x in items if RNG.random() < 0.4] or ["i0"] for _ in range(n)]
        recs = []
        for i in range(n):
            recs.append(prediction_event(f"c{i}", model="animals", task="multiclass", value=p[i]))
            recs.append(label_event(f"c{i}", model="animals", value=t[i]))
            recs.append(prediction_event(f"b{i}", model="fraud", value=str(int(s[i] > 0.5)),
                                         **{a.ML_PREDICTION_SCORE: float(s[i]), a.ML_LABEL_VALUE: str(y[i])}))
            recs.append(prediction_event(f"r{i}", model="eta", task="regression", value=float(yp[i])))
            recs.append(label_event(f"r{i}", model="eta", value=float(yt[i])))
            recs.append(prediction_event(f"k{i}", model="search", task="ranking", value=ranked[i]))
            recs.append(label_event(f"k{i}", model="search", value=relevant[i]))
        stub = logs_service_pb2_grpc.LogsServiceStub(grpc.insecure_channel(f"127.0.0.1:{proc.grpc_port}"))
        for i in range(0, len(recs), 250):
            stub.Export(ev.request(recs[i:i + 250]), timeout=30)

        model = label_name(a.ML_MODEL_NAME)
        cls, outcome = label_name(a.ML_CLASS), label_name(a.ML_OUTCOME)
        labeled, correct = prom_name(m.LABELED_PREDICTIONS), prom_name(m.CORRECT_PREDICTIONS)
        oc = prom_name(m.CLASSIFICATION_OUTCOMES)

        def q(expr: str) -> float | None:
            return prom.query_value(expr)

        wait_until(lambda: q(f'sum({labeled}{{{model}="search"}})') == n and
                   q(prom_name(m.CLASSIFICATION_ROC_AUC)) is not None, timeout=60, what="all joins scraped")
        assert q(f'sum({correct}{{{model}="animals"}}) / sum({labeled}{{{model}="animals"}})') == pytest.approx(
            skm.accuracy_score(t, p))
        prec, rec, f1, _ = skm.precision_recall_fscore_support(t, p, labels=names, zero_division=0)
        for i, c in enumerate(names):
            tp = f'sum({oc}{{{model}="animals",{cls}="{c}",{outcome}="tp"}})'
            fp = f'sum({oc}{{{model}="animals",{cls}="{c}",{outcome}="fp"}})'
            fn = f'sum({oc}{{{model}="animals",{cls}="{c}",{outcome}="fn"}})'
            assert q(f"{tp} / ({tp} + {fp})") == pytest.approx(prec[i])
            assert q(f"{tp} / ({tp} + {fn})") == pytest.approx(rec[i])
        by = f'sum by ({cls}, {outcome}) ({oc}{{{model}="animals"}})'
        tp_c = f'sum by ({cls}) ({oc}{{{model}="animals",{outcome}="tp"}})'
        fp_c = f'sum by ({cls}) ({oc}{{{model}="animals",{outcome}="fp"}})'
        fn_c = f'sum by ({cls}) ({oc}{{{model}="animals",{outcome}="fn"}})'
        assert prom.query(by)
        macro_f1 = f"avg(2 * {tp_c} / (2 * {tp_c} + {fp_c} + {fn_c}))"
        assert q(macro_f1) == pytest.approx(f1.mean())
        micro_p = f'sum({oc}{{{model}="animals",{outcome}="tp"}}) / sum({oc}{{{model}="animals",{outcome}=~"tp|fp"}})'
        assert q(micro_p) == pytest.approx(skm.precision_score(t, p, average="micro"))
        assert q(f'{prom_name(m.CLASSIFICATION_ROC_AUC)}{{{model}="fraud"}}') == pytest.approx(skm.roc_auc_score(y, s))
        mae = f'sum({prom_name(m.REGRESSION_ABSOLUTE_ERROR)}) / sum({labeled}{{{model}="eta"}})'
        assert q(mae) == pytest.approx(skm.mean_absolute_error(yt, yp))
        rmse = f'sqrt(sum({prom_name(m.REGRESSION_SQUARED_ERROR)}) / sum({labeled}{{{model}="eta"}}))'
        assert q(rmse) == pytest.approx(math.sqrt(skm.mean_squared_error(yt, yp)))
        mrr = np.mean([next((1 / (j + 1) for j, x in enumerate(r) if x in rel), 0.0)
                       for r, rel in zip(ranked, relevant, strict=True)])
        assert q(f'sum({prom_name(m.RANKING_RECIPROCAL_RANK)}) / sum({labeled}{{{model}="search"}})') == \
            pytest.approx(mrr)
        y_true = np.array([[1.0 if u in rel else 0.0 for u in items] for rel in relevant])
        y_score = np.array([[len(r) - r.index(u) for u in items] for r in ranked], dtype=float)
        ndcg = f'sum({prom_name(m.RANKING_NDCG_AT_K)}{{{label_name(a.ML_RANKING_K)}="3"}}) / ' \
               f'sum({labeled}{{{model}="search"}})'
        assert q(ndcg) == pytest.approx(skm.ndcg_score(y_true, y_score, k=3))
        delay = prom_name(m.LABEL_DELAY)
        assert q(f'sum({delay}_count{{{model}="animals"}})') == n
        assert q(f'sum({delay}_sum{{{model}="animals"}}) / sum({delay}_count{{{model}="animals"}})') == \
            pytest.approx(60.0)
    finally:
        prom.stop()
        proc.process.stop()
