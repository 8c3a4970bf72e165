# otel-ml image: the processor (`otel-ml processor`) and the demo traffic generator (`otel-ml demo --collector ...`).
# Build from the repository root: docker build -t otel-ml:0.1.0 .
# The base images are pinned to a patch release; bump them deliberately (both stages together).

# Build stage: the full image has gcc, so the wheel carries the decoder's C extension (the build fails without it).
FROM python:3.11.14-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md MANIFEST.in ./
COPY otel_ml ./otel_ml
# what `otel-ml generate --out` reads, packaged into otel_ml/_assets by setup.py
COPY dashboards ./dashboards
COPY alerts/config.yaml ./alerts/
COPY grafana/provisioning ./grafana/provisioning
RUN pip wheel --no-deps --no-cache-dir -w /wheels . \
    && python -c "import glob, sys, zipfile; names = zipfile.ZipFile(glob.glob('/wheels/otel_ml-*.whl')[0]).namelist(); sys.exit(not any('_fastdecode' in n and n.endswith('.so') for n in names))"

FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg

# Only the package: the image does not carry tests, dashboards or benchmarks.
COPY --from=build /wheels /wheels
RUN pip install "$(ls /wheels/otel_ml-*.whl)[processor]" && rm -rf /wheels \
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
