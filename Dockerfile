# otel-ml image: the processor (`otel-ml processor`) and the demo traffic generator (`otel-ml demo --collector ...`).
# Build from the repository root: docker build -t otel-ml:0.1.0 .
# The base image is pinned to a patch release; bump it deliberately.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg

WORKDIR /src
# Only what the package build needs: the image does not carry tests, dashboards or benchmarks.
COPY pyproject.toml README.md ./
COPY otel_ml ./otel_ml
RUN pip install ".[processor]" \
    && useradd --system --uid 10001 --home-dir /var/lib/otel-ml --create-home otelml \
    && mkdir -p /var/lib/otel-ml/data /var/lib/otel-ml/references /var/lib/otel-ml/demo \
    && chown -R otelml /var/lib/otel-ml

# Named volumes mounted on these directories inherit their owner, so the processor can write to them.
USER 10001
WORKDIR /var/lib/otel-ml
# OTLP gRPC, OTLP/HTTP and the optional Prometheus scrape endpoint of the processor.
EXPOSE 4317 4318 9464
ENTRYPOINT ["otel-ml"]
CMD ["processor", "--config", "/etc/otel-ml/processor.yaml"]
