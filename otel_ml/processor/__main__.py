"""``python -m otel_ml.processor --config processor.yaml``."""

from otel_ml.processor.cli import main

raise SystemExit(main())
