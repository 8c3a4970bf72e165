"""otel-ml self-monitoring: is the monitoring itself healthy?

Instrumentation drops and truncations in the applications, processor ingest, rejects by reason, refusals by reason,
failed requests and authentication failures by endpoint, memory against the limiter's limits, the join store (pending
records, oldest pending label, evictions, storage errors by kind, quarantined records), metric export failures and
attribute cardinality overflow. Processor metrics are per replica (instance).
"""

from otel_ml import promql as q
from otel_ml.dashboarding import panels as p
from otel_ml.dashboarding.panels import Query
from otel_ml.grafana_uids import FLEET_DASHBOARD_UID, MODEL_DASHBOARD_UID, SELF_DASHBOARD_UID
from otel_ml.semconv import metrics as m

R = "$__rate_interval"
SEL = {q.MODEL: "$model"}
INST = (q.INSTANCE,)

dashboard = p.dashboard(
    "otel-ml / Self-monitoring", SELF_DASHBOARD_UID,
    description=__doc__.splitlines()[0],
    panels=[
        p.row("Instrumentation (in the applications)"),
        p.timeseries("Events dropped", [
            Query(q.summed_rate(m.CLIENT_EVENTS_DROPPED, R, (q.MODEL, q.REASON), SEL),
                  f"{{{{{q.MODEL}}}}} {{{{{q.REASON}}}}}"),
        ], unit="reqps", description="Prediction/label events dropped instead of slowing inference, by reason."),
        p.timeseries("Events dropped (share)", [
            Query(q.dropped_event_ratio(R, (q.MODEL,), SEL), f"{{{{{q.MODEL}}}}}"),
        ], ratio=True, description="dropped / (exported + dropped) per model."),
        p.timeseries("Events exported", [
            Query(q.summed_rate(m.CLIENT_EVENTS_EXPORTED, R, (q.MODEL,), SEL), f"{{{{{q.MODEL}}}}}"),
        ], unit="reqps", description="Events accepted by the OTLP endpoint."),
        p.timeseries("Values truncated and queue", [
            Query(q.summed_rate(m.CLIENT_VALUES_TRUNCATED, R, (q.MODEL, q.REASON), SEL),
                  f"truncated {{{{{q.MODEL}}}}} {{{{{q.REASON}}}}}"),
            Query(f"sum by ({q.JOB}) ({q.sel(m.CLIENT_QUEUE_SIZE)})", "queued {{job}}"),
        ], description="Attribute values capped or replaced (per second) and events waiting in the bounded queue."),
        p.row("Processor ingest"),
        p.timeseries("Records received, ignored, joined", [
            Query(q.summed_rate(m.PROCESSOR_RECORDS_RECEIVED, R, INST), "received {{instance}}"),
            Query(q.summed_rate(m.PROCESSOR_RECORDS_IGNORED, R, INST), "ignored {{instance}}"),
            Query(q.summed_rate(m.PROCESSOR_JOINS, R, INST), "joins {{instance}}"),
        ], unit="reqps", description="Log records received over OTLP, not otel-ml events (ignored), joins made."),
        p.timeseries("Records rejected by reason, features dropped", [
            Query(q.summed_rate(m.PROCESSOR_RECORDS_REJECTED, R, (q.REASON,)), f"{{{{{q.REASON}}}}}"),
            Query(q.summed_rate(m.PROCESSOR_FEATURES_DROPPED, R, (q.REASON,)), f"feature {{{{{q.REASON}}}}}"),
        ], unit="reqps", description=(
            "Malformed otel-ml events rejected (reported in OTLP partial_success); features dropped from accepted "
            "predictions because of the processor's limits.*.")),
        p.timeseries("Requests refused (retryable) and queue depth", [
            Query(q.summed_rate(m.PROCESSOR_REQUESTS_REFUSED, R, (q.INSTANCE, q.REASON)),
                  f"refused/s {{{{instance}}}} {{{{{q.REASON}}}}}"),
            Query(f"sum by ({q.INSTANCE}) ({q.sel(m.PROCESSOR_QUEUE_DEPTH)})", "queue depth {{instance}}"),
        ], description=(
            "Export requests answered UNAVAILABLE/503 + Retry-After so the sender retries, by reason (overloaded, "
            "memory_limit, shutting_down, store_unavailable, too_many_connections); requests in flight.")),
        p.timeseries("Requests failed and authentication failures", [
            Query(q.summed_rate(m.PROCESSOR_REQUESTS_FAILED, R, (q.RECEIVER, q.REASON)),
                  f"failed {{{{{q.RECEIVER}}}}} {{{{{q.REASON}}}}}"),
            Query(q.summed_rate(m.PROCESSOR_AUTH_FAILURES, R, (q.RECEIVER, q.REASON)),
                  f"auth {{{{{q.RECEIVER}}}}} {{{{{q.REASON}}}}}"),
        ], unit="reqps", description=(
            "Requests answered with a permanent request-level error (bad framing, timeouts, wrong media type or "
            "path, internal errors) and requests or TLS handshakes refused for their credentials, by endpoint.")),
        p.timeseries("Memory and limiter limits", [
            Query(f"max by ({q.INSTANCE}) ({q.sel(m.PROCESSOR_MEMORY_RSS)})", "RSS {{instance}}"),
            Query(f"max by ({q.INSTANCE}) ({q.sel(m.PROCESSOR_MEMORY_SOFT_LIMIT)})", "soft limit {{instance}}"),
            Query(f"max by ({q.INSTANCE}) ({q.sel(m.PROCESSOR_MEMORY_HARD_LIMIT)})", "hard limit {{instance}}"),
        ], unit="bytes", description=(
            "Resident memory of each replica against its memory limiter: above the soft limit new requests are "
            "refused (memory_limit), above the hard limit caches are shed.")),
        p.timeseries("Metric export failures", [
            Query(q.summed_rate(m.PROCESSOR_EXPORT_FAILURES, R, INST), "{{instance}}"),
        ], unit="reqps", description="Failed metric exports from the processor to its OTLP endpoint."),
        p.row("Join store"),
        p.timeseries("Pending records", [
            Query(f"sum by ({q.INSTANCE}) ({q.sel(m.PROCESSOR_STORE_PENDING)})", "{{instance}}"),
        ], width=8, description="Predictions and labels waiting for their counterpart."),
        p.timeseries("Oldest pending prediction", [
            Query(f"max by ({q.INSTANCE}) ({q.sel(m.PROCESSOR_STORE_OLDEST_PENDING_AGE)})", "{{instance}}"),
        ], unit="s", width=8, description="Age of the oldest prediction still waiting for its label."),
        p.timeseries("Evictions and cardinality overflow", [
            Query(q.summed_rate(m.PROCESSOR_STORE_EVICTED, R, INST), "evicted {{instance}}"),
            Query(q.summed_rate(m.PROCESSOR_ATTRIBUTE_OVERFLOW, R, (q.MODEL, q.ATTRIBUTE_KEY, q.REASON), SEL),
                  f"overflow {{{{{q.MODEL}}}}} {{{{{q.ATTRIBUTE_KEY}}}}} {{{{{q.REASON}}}}}"),
            Query(f"sum by ({q.INSTANCE}) ({q.sel(m.PROCESSOR_SERIES_OVERFLOW)})", "SDK-folded series {{instance}}"),
        ], unit="reqps", width=8, description=(
            "Pending records evicted at the store's size bound; metric attribute values mapped to _other by "
            "reason (limit: cap full, admission: new value not yet seen often enough, series: metric at "
            "metrics.series_limit); series the OpenTelemetry SDK folded into otel.metric.overflow (a gauge).")),
        p.timeseries("Store errors by kind", [
            Query(q.summed_rate(m.PROCESSOR_STORE_ERRORS, R, (q.INSTANCE, q.REASON)),
                  f"{{{{instance}}}} {{{{{q.REASON}}}}}"),
        ], unit="reqps", width=12, description=(
            "Failed join store operations by kind (full, io, nomem, locked, readonly, corrupt, unavailable): while "
            "they last, requests are answered UNAVAILABLE and senders queue; the store recovers by itself.")),
        p.timeseries("Quarantined store records", [
            Query(q.summed_increase(m.PROCESSOR_STORE_QUARANTINED, R, INST), "{{instance}}"),
        ], width=12, description=(
            "Stored records that could not be decoded, moved to the quarantine table (lost joins; the log names "
            "each key).")),
    ],
    variables=[p.query_variable("model", "Model",
                                f"label_values({q.series(m.CLIENT_EVENTS_EXPORTED)}, {q.MODEL})",
                                multi=True, include_all=True)],
    links=[p.link("Fleet overview", FLEET_DASHBOARD_UID, keep_vars=False),
           p.link("Model overview", MODEL_DASHBOARD_UID, keep_vars=False)],
)
