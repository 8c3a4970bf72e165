"""The otel-ml processor: OTLP logs in, durable prediction-label join, realized quality metrics out.

Run it with ``otel-ml processor --config processor.yaml`` (or ``python -m otel_ml.processor --config ...``).
Modules: :mod:`~otel_ml.processor.config` (YAML config), :mod:`~otel_ml.processor.decode` (OTLP -> columns),
:mod:`~otel_ml.processor.store` (join stores), :mod:`~otel_ml.processor.pipeline` (one transaction per step),
:mod:`~otel_ml.processor.export` (OTel SDK instruments), :mod:`~otel_ml.processor.server` (gRPC and HTTP
receivers), :mod:`~otel_ml.processor.stage` (extension point for estimation/drift stages).
"""
