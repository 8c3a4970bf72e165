"""Dashboards as code for otel-ml: house-style panels (:mod:`.panels`) and the generator of
``dashboards/generated/*.json`` (:mod:`.generate`).

Dashboards are declared in ``dashboards/*.dashboard.py`` (the grafanalib convention: a module-level ``dashboard``);
everything that touches grafanalib's classes lives in :mod:`.panels`, so a later switch to the official
``grafana-foundation-sdk`` rewrites one module. PromQL comes from :mod:`otel_ml.promql` and the dashboard uids from
:mod:`otel_ml.grafana_uids`, which the alert rules share; this package never imports :mod:`otel_ml.alerting`.
"""
