"""otel-ml: ML model-quality monitoring on OpenTelemetry, Prometheus and Grafana."""

__version__ = "0.1.0"
