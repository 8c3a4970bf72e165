"""Dashboards as code for otel-ml: PromQL builders (:mod:`.promql`), house-style panels (:mod:`.panels`) and the
generator of ``dashboards/generated/*.json`` (:mod:`.generate`).

Dashboards are declared in ``dashboards/*.dashboard.py`` (the grafanalib convention: a module-level ``dashboard``);
everything that touches grafanalib's classes lives in :mod:`.panels`, so a later switch to the official
``grafana-foundation-sdk`` rewrites one module.
"""

MODEL_DASHBOARD_UID = "otel-ml-model"
"""uid of the Model overview dashboard (alert annotations and the fleet table link to it)."""
FLEET_DASHBOARD_UID = "otel-ml-fleet"
"""uid of the Fleet overview dashboard."""
SELF_DASHBOARD_UID = "otel-ml-self"
"""uid of the otel-ml self-monitoring dashboard."""
DATASOURCE_UID = "prometheus"
"""uid of the Prometheus datasource (``grafana/provisioning/datasources``); every target references it."""
