"""A scikit-learn model behind FastAPI with otel-ml, and a separate feedback service that sends labels."""
