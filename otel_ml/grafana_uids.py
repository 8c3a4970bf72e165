"""uids of the Grafana objects otel-ml provisions: the dashboards define them, alert rules and links point at them.

One floor below :mod:`otel_ml.dashboarding` and :mod:`otel_ml.alerting` (with :mod:`otel_ml.promql`), so the two
never import each other.
"""

MODEL_DASHBOARD_UID = "otel-ml-model"
"""uid of the Model overview dashboard (alert annotations and the fleet table link to it)."""
FLEET_DASHBOARD_UID = "otel-ml-fleet"
"""uid of the Fleet overview dashboard."""
SELF_DASHBOARD_UID = "otel-ml-self"
"""uid of the otel-ml self-monitoring dashboard."""
DATASOURCE_UID = "prometheus"
"""uid of the Prometheus datasource (``grafana/provisioning/datasources``); every target references it."""
