"""Built-in processor stages (see :mod:`otel_ml.processor.stage` for the contract)."""
