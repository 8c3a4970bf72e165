"""``python -m otel_ml`` is the ``otel-ml`` command."""

from otel_ml.cli import main

raise SystemExit(main())
