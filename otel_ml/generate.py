"""``otel-ml generate``: regenerate (or ``--check``) every generated Grafana and Prometheus file.

Writes ``dashboards/generated/*.json`` from ``dashboards/*.dashboard.py``, and ``alerts/otel-ml.rules.yaml`` plus
``grafana/provisioning/alerting/otel-ml-rules.yaml`` from ``alerts/config.yaml``. ``--check`` changes nothing and
exits 1 when a committed file is out of date (CI).
"""

from __future__ import annotations

import argparse

from otel_ml.alerting import generate as alerts
from otel_ml.dashboarding import generate as dashboards


def main(argv: list[str] | None = None) -> int:
    """Run both generators; the exit status is the worst of the two."""
    parser = argparse.ArgumentParser(prog="otel-ml generate", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is out of date")
    args = parser.parse_args(argv)
    flags = ["--check"] if args.check else []
    return max(dashboards.main(flags), alerts.main(flags))


if __name__ == "__main__":
    raise SystemExit(main())
