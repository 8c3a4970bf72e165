"""``otel-ml generate``: the Prometheus rules and the Grafana dashboards and provisioning, for your thresholds.

Usage::

    otel-ml generate --out ./otel-ml-generated --config my-thresholds.yaml   # from an installed package
    otel-ml generate                                                          # in a checkout: rewrite the committed
    otel-ml generate --check                                                  # files; --check: exit 1 if stale (CI)

``--config`` is a file in the format of ``alerts/config.yaml`` (``runbook_url``, ``grafana_url``, ``thresholds``
per model; default: the shipped one). ``--out DIR`` writes::

    DIR/alerts/otel-ml.rules.yaml                            Prometheus recording + alerting rules (with thresholds)
    DIR/dashboards/*.json                                    the dashboards
    DIR/grafana/provisioning/alerting/otel-ml-rules.yaml     the same alerts as Grafana-managed rules
    DIR/grafana/provisioning/alerting/otel-ml-contact-points.yaml
    DIR/grafana/provisioning/dashboards/otel-ml.yaml         dashboard provider (mount DIR/dashboards at its path)
    DIR/grafana/provisioning/datasources/prometheus.yaml     the Prometheus data source (uid ``prometheus``)

The sources (dashboard definitions, default thresholds, static provisioning) come from the checkout when there is
one, else from the copies the wheel carries in ``otel_ml/_assets`` (``setup.py`` copies them at build time; the
repository files stay the one source).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from otel_ml.alerting import generate as alerts
from otel_ml.dashboarding import generate as dashboards

PACKAGE = Path(__file__).resolve().parent
ASSETS = {
    "dashboards": "*.dashboard.py",
    "alerts": "config.yaml",
    "grafana/provisioning/dashboards": "*.yaml",
    "grafana/provisioning/datasources": "*.yaml",
    "grafana/provisioning/alerting": "otel-ml-contact-points.yaml",
}
"""Repository files a generation reads (folder: glob), packaged into ``otel_ml/_assets`` by ``setup.py``."""


def sources() -> Path:
    """The directory holding :data:`ASSETS`: the checkout, or the copies inside an installed wheel."""
    checkout = PACKAGE.parent
    if (checkout / "alerts" / "config.yaml").is_file() and (checkout / "dashboards").is_dir():
        return checkout
    return PACKAGE / "_assets"


def write_all(out: Path, config: Path | None = None) -> list[Path]:
    """Write every generated and static file under ``out`` (see the module docstring); returns their paths."""
    src = sources()
    files: dict[Path, str] = {}
    for path, text in alerts.outputs(config or src / "alerts" / "config.yaml").items():
        where = {alerts.RULES_OUT: Path("alerts") / alerts.RULES_OUT.name,
                 alerts.GRAFANA_OUT: Path("grafana/provisioning/alerting") / alerts.GRAFANA_OUT.name}[path]
        files[out / where] = text
    for path, text in dashboards.outputs(src / "dashboards").items():
        files[out / "dashboards" / path.name] = text
    written = []
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    for folder, pattern in ASSETS.items():
        if folder.startswith("grafana/"):
            for static in sorted((src / folder).glob(pattern)):
                target = out / folder / static.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(static, target)
                written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """Write to ``--out``, or regenerate (``--check``) the checkout's committed files."""
    parser = argparse.ArgumentParser(prog="otel-ml generate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write everything under this directory (works from an install)")
    parser.add_argument("--config", type=Path, help="thresholds file (format of alerts/config.yaml)")
    parser.add_argument("--check", action="store_true", help="fail if a committed generated file is out of date")
    args = parser.parse_args(argv)
    if args.out is not None:
        if args.check:
            parser.error("--check verifies the checkout's committed files; it does not combine with --out")
        for path in write_all(args.out, args.config):
            print(path)
        return 0
    if sources() != PACKAGE.parent:
        print("otel-ml generate: no checkout here to regenerate; write the files somewhere with "
              "`otel-ml generate --out DIR [--config my-thresholds.yaml]`", file=sys.stderr)
        return 2
    flags = ["--check"] if args.check else []
    alert_flags = [*flags, "--config", str(args.config)] if args.config is not None else flags
    return max(dashboards.main(flags), alerts.main(alert_flags))


if __name__ == "__main__":
    raise SystemExit(main())
