"""Fleet overview: one row per model with its health, linking to the model overview.

Health = worst firing otel-ml alert of the model (OK / WARN / CRIT); quality vs baseline is the realized accuracy of
its worst version minus that version's evaluation baseline; estimated quality needs no labels; drift is the largest
feature PSI over the last day. Values come from the recording rules of alerts/otel-ml.rules.yaml.
"""

from otel_ml import promql as q
from otel_ml.alerting import rules as r
from otel_ml.alerting import significance as sig
from otel_ml.dashboarding import panels as p
from otel_ml.dashboarding.panels import Query
from otel_ml.grafana_uids import FLEET_DASHBOARD_UID, MODEL_DASHBOARD_UID, SELF_DASHBOARD_UID
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import QualityMetric as QM

M = (q.MODEL,)
SEL = {q.MODEL: "$model"}
MF = q.matchers(m.PREDICTIONS, SEL)
MODELS = f"group by ({q.MODEL}) ({q.sel(m.PREDICTIONS, '', SEL)})"
FIRING = f'ALERTS{{alertstate="firing", {q.MODEL}=~"$model"}}'
HEALTH = (f"max by ({q.MODEL}) (2 * ({FIRING[:-1]}, severity=\"critical\"}})"
          f" or ({FIRING[:-1]}, severity=\"warning\"}}))"
          f" or 0 * {MODELS}")
VS_BASELINE = (f"min by ({q.MODEL}) ({r.ACCURACY}{MF} - on ({q.MODEL}, {q.VERSION}) "
               f'{r.REFERENCE}{{{q.MODEL}=~"$model", {q.METRIC}="{QM.ACCURACY}"}})')
EST_VS_BASELINE = VS_BASELINE.replace(r.ACCURACY, r.EST_ACCURACY)
MODEL_LINK = f"/d/{MODEL_DASHBOARD_UID}?var-model=${{__data.fields.model}}&${{__url_time_range}}"

health_table = p.table("Models", [
    Query(HEALTH),
    Query(f"min by ({q.MODEL}) ({r.ACCURACY}{MF})"),
    Query(VS_BASELINE),
    Query(f"min by ({q.MODEL}) ({r.EST_ACCURACY}{MF})"),
    Query(EST_VS_BASELINE),
    Query(f"max by ({q.MODEL}) ({sig.FEATURE.test('1d').effect}{MF})"),
    Query(f"count by ({q.MODEL}) ({FIRING}) or 0 * {MODELS}"),
    Query(q.summed_rate(m.PREDICTIONS, "5m", M, SEL)),
], rename={q.MODEL: "model", "Value #A": "health", "Value #B": "accuracy (1h)", "Value #C": "vs baseline",
           "Value #D": "estimated accuracy", "Value #E": "estimated vs baseline", "Value #F": "max feature PSI (1d)",
           "Value #G": "alerts firing", "Value #H": "predictions/s"},
    units={"Value #B": "percentunit", "Value #C": "percentunit", "Value #D": "percentunit", "Value #E": "percentunit",
           "Value #H": "reqps"},
    links={q.MODEL: MODEL_LINK},
    color_thresholds={"Value #A": [(None, "green"), (1, "orange"), (2, "red")],
                      "Value #C": [(None, "red"), (-0.05, "orange"), (-0.02, "green")],
                      "Value #E": [(None, "red"), (-0.05, "orange"), (-0.02, "green")],
                      "Value #F": [(None, "green"), (0.1, "orange"), (0.25, "red")],
                      "Value #G": [(None, "green"), (1, "red")]},
    mappings=[{"type": "value", "options": {"0": {"text": "OK"}, "1": {"text": "WARN"}, "2": {"text": "CRIT"}}}],
    width=24, height=10,
    description=("One row per model. health: worst firing otel-ml alert (OK/WARN/CRIT); accuracy and estimated "
                 "accuracy of the worst version over the last hour and their difference to that version's "
                 "evaluation baseline; max feature PSI: largest population stability index of a feature over the last "
                 "day; click a model for its overview."))

dashboard = p.dashboard(
    "otel-ml / Fleet overview", FLEET_DASHBOARD_UID,
    description=__doc__.splitlines()[0],
    panels=[
        health_table,
        p.timeseries("Realized accuracy vs baseline (worst version)", [
            Query(VS_BASELINE, f"{{{{{q.MODEL}}}}}"),
        ], ratio=False, unit="percentunit", description="Realized accuracy minus evaluation baseline, per model."),
        p.timeseries("Estimated accuracy vs baseline (worst version)", [
            Query(EST_VS_BASELINE, f"{{{{{q.MODEL}}}}}"),
        ], unit="percentunit", description="Label-free estimated accuracy minus evaluation baseline, per model."),
        p.timeseries("Alerts firing", [
            Query(f"count by ({q.MODEL}, alertname) ({FIRING})", "{{ml_model_name}} {{alertname}}"),
        ], stacked=True, description="otel-ml alerts firing per model and alert."),
        p.timeseries("Traffic", [
            Query(q.summed_rate(m.PREDICTIONS, "$__rate_interval", M, SEL), f"{{{{{q.MODEL}}}}}"),
        ], unit="reqps", description="Predictions per second per model."),
    ],
    variables=[p.query_variable("model", "Model", f"label_values({q.series(m.PREDICTIONS)}, {q.MODEL})",
                                multi=True, include_all=True)],
    links=[p.link("Model overview", MODEL_DASHBOARD_UID, keep_vars=False),
           p.link("otel-ml self-monitoring", SELF_DASHBOARD_UID, keep_vars=False)],
)
