"""House style of the otel-ml dashboards: the only module that touches grafanalib's classes.

Dashboards (``dashboards/*.dashboard.py``) call these functions with PromQL from :mod:`.promql` and never build
grafanalib objects themselves, so moving to the official ``grafana-foundation-sdk`` means rewriting this module
only. Conventions kept here:

* every target names the Prometheus datasource by uid (:data:`DATASOURCE`);
* panels are laid out by :func:`layout` on the 24-column grid, left to right, wrapping into new lines, so positions
  never overlap;
* time series share the crosshair (``graphTooltip=1``) so quality, traffic and resources read on one time axis;
* ratios use ``percentunit`` with a 0-1 axis; baselines are dashed reference lines; the estimate's interval is a
  translucent band.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from otel_ml.grafana_uids import DATASOURCE_UID

DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": DATASOURCE_UID}
"""Datasource reference put on every panel, target, variable and annotation."""
GRID_WIDTH = 24
DEFAULT_HEIGHT = 8


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel.

    Attributes:
        expr: PromQL (Grafana variables allowed: ``$model``, ``$window``, ``$__rate_interval``...).
        legend: Legend format (``{{ml_model_version}}``).
        instant: Instant query (tables, stats) instead of a range query.
        table: Return the result as a table (``format: table``).
    """

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


def _targets(queries: Sequence[Query]) -> list[g.Target]:
    return [g.Target(expr=qr.expr, legendFormat=qr.legend, refId=chr(ord("A") + i), instant=qr.instant,
                     format="table" if qr.table else "time_series", datasource=DATASOURCE, intervalFactor=1)
            for i, qr in enumerate(queries)]


def _override(matcher: str, value: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"matcher": {"id": matcher, "options": value},
            "properties": [{"id": k, "value": v} for k, v in properties.items()]}


def baseline_style(prefix: str = "baseline") -> dict[str, Any]:
    """Override: series whose name starts with ``prefix`` are dashed, unfilled reference lines."""
    return _override("byRegexp", f"/^{prefix}/", {"custom.lineStyle": {"dash": [10, 10], "fill": "dash"},
                                                 "custom.fillOpacity": 0, "color": {"mode": "fixed",
                                                                                    "fixedColor": "text"}})


def band_style(lower: str = "interval low", width: str = "interval width") -> list[dict[str, Any]]:
    """Overrides drawing ``lower`` + stacked ``width`` series as a translucent band (the estimate's interval)."""
    stack = {"group": "interval", "mode": "normal"}
    hidden = {"legend": True, "tooltip": False, "viz": False}
    return [
        _override("byRegexp", f"/^{lower}/", {"custom.stacking": stack, "custom.lineWidth": 0,
                                              "custom.fillOpacity": 0, "custom.hideFrom": hidden}),
        _override("byRegexp", f"/^{width}/", {"custom.stacking": stack, "custom.lineWidth": 0,
                                              "custom.fillOpacity": 20, "custom.hideFrom": hidden}),
    ]


@dataclass
class Panel:
    """A panel before layout: the grafanalib object factory plus its width and height."""

    build: Any
    width: int = 12
    height: int = DEFAULT_HEIGHT
    kwargs: dict[str, Any] = field(default_factory=dict)


def timeseries(title: str, queries: Sequence[Query], *, description: str, unit: str = "short",
               ratio: bool = False, overrides: Sequence[dict[str, Any]] = (), stacked: bool = False,
               width: int = 12, height: int = DEFAULT_HEIGHT) -> Panel:
    """Time series; ``ratio`` = percent axis 0-1; series named ``baseline…`` are drawn dashed."""
    kw: dict[str, Any] = dict(
        title=title, description=description, targets=_targets(queries), dataSource=DATASOURCE,
        unit="percentunit" if ratio else unit, legendDisplayMode="table", legendPlacement="right",
        legendCalcs=["lastNotNull"], tooltipMode="multi", showPoints="never", spanNulls=True,
        overrides=[baseline_style(), *overrides], fillOpacity=10 if stacked else 0)
    if stacked:
        kw["stacking"] = {"mode": "normal", "group": "A"}
    if ratio:
        kw.update(valueMin=0, valueMax=1)
    return Panel(g.TimeSeries, width, height, kw)


def table(title: str, queries: Sequence[Query], *, description: str, rename: dict[str, str],
          units: dict[str, str] | None = None, links: dict[str, str] | None = None,
          color_thresholds: dict[str, list[tuple[float | None, str]]] | None = None,
          mappings: list[dict[str, Any]] | None = None,
          width: int = 12, height: int = DEFAULT_HEIGHT) -> Panel:
    """Table of instant queries joined on their labels.

    Args:
        title: Panel title.
        queries: Instant table queries (their ``Value #<refId>`` columns are renamed by ``rename``).
        description: What the panel means (shown on hover).
        rename: Column renames; columns not listed (``Time``, ``__name__``...) are hidden.
        units: Unit per renamed column.
        links: Data link URL per renamed column (Grafana ``${__data.fields...}`` syntax).
        color_thresholds: Per column, threshold steps ``(value, color)`` colouring the cell background.
        mappings: Value mappings for every column (e.g. health codes -> OK / WARN / CRIT).
        width: Grid width.
        height: Grid height.
    """
    queries = [Query(qr.expr, qr.legend, instant=True, table=True) for qr in queries]
    order = {name: i for i, name in enumerate(rename)}
    transformations = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {
            "excludeByName": {"Time": True, "__name__": True},
            "includeByName": {k: True for k in rename},
            "indexByName": order,
            "renameByName": rename}},
    ]
    overrides: list[dict[str, Any]] = []
    for col, unit in (units or {}).items():
        overrides.append(_override("byName", rename[col], {"unit": unit}))
    for col, url in (links or {}).items():
        overrides.append(_override("byName", rename[col], {"links": [{"title": "Open", "url": url}]}))
    for col, steps in (color_thresholds or {}).items():
        overrides.append(_override("byName", rename[col], {
            "custom.cellOptions": {"type": "color-background"},
            "thresholds": {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}}))
    extra: dict[str, Any] = {"fieldConfig": {"defaults": {"mappings": mappings or []}}}
    kw = dict(title=title, description=description, targets=_targets(queries), dataSource=DATASOURCE,
              transformations=transformations, overrides=overrides, extraJson=extra, filterable=True)
    return Panel(g.Table, width, height, kw)


def stat(title: str, queries: Sequence[Query], *, description: str, unit: str = "short",
         width: int = 6, height: int = 4) -> Panel:
    """Single value (last value of each series)."""
    kw = dict(title=title, description=description, targets=_targets(queries), dataSource=DATASOURCE,
              format=unit, reduceCalc="lastNotNull", graphMode="area")
    return Panel(g.Stat, width, height, kw)


def heatmap(title: str, queries: Sequence[Query], *, description: str, width: int = 12,
            height: int = DEFAULT_HEIGHT) -> Panel:
    """Heatmap of a Prometheus histogram's buckets (``format: heatmap``)."""
    targets = [g.Target(expr=qr.expr, legendFormat=qr.legend or "{{le}}", refId=chr(ord("A") + i),
                        format="heatmap", datasource=DATASOURCE, intervalFactor=1) for i, qr in enumerate(queries)]
    kw = dict(title=title, description=description, targets=targets, dataSource=DATASOURCE,
              dataFormat="tsbuckets", hideZeroBuckets=True, yBucketBound="upper")
    return Panel(g.Heatmap, width, height, kw)


def row(title: str) -> Panel:
    """A full-width row header."""
    return Panel(g.RowPanel, GRID_WIDTH, 1, {"title": title})


def layout(panels: Iterable[Panel]) -> list[Any]:
    """Place panels left to right on the 24-column grid, wrapping lines; rows start a new line.

    Returns:
        grafanalib panels with ``gridPos`` set; no two overlap by construction.
    """
    out: list[Any] = []
    x = y = line_height = 0
    for p in panels:
        if p.build is g.RowPanel or x + p.width > GRID_WIDTH:
            y += line_height
            x = line_height = 0
        out.append(p.build(gridPos=g.GridPos(h=p.height, w=p.width, x=x, y=y), **p.kwargs))
        x += p.width
        line_height = max(line_height, p.height)
        if p.build is g.RowPanel:
            y += p.height
            x = line_height = 0
    return out


def query_variable(name: str, label: str, query: str, *, multi: bool = False, include_all: bool = False,
                   hide: int = 0) -> g.Template:
    """A variable filled from ``label_values(...)``; "All" means the regex ``.*``."""
    return g.Template(name=name, label=label, query={"query": query, "refId": f"{name}-var"},
                      dataSource=DATASOURCE, multi=multi, includeAll=include_all,
                      allValue=".*" if include_all else None, default="All" if include_all else None,
                      refresh=2, sort=1, hide=hide)


def custom_variable(name: str, label: str, options: Sequence[str], default: str) -> g.Template:
    """A fixed list of values (e.g. the quality window ``15m,1h,6h,1d``)."""
    opts = [{"selected": o == default, "text": o, "value": o} for o in options]
    return g.Template(name=name, label=label, query=",".join(options), type="custom", default=default,
                      options=opts)


def annotation(name: str, expr: str, title: str, color: str) -> dict[str, Any]:
    """A Prometheus annotation: a marker wherever ``expr`` returns a series."""
    return {"datasource": DATASOURCE, "enable": True, "expr": expr, "iconColor": color, "name": name,
            "step": "60s", "titleFormat": title, "useValueForTime": False}


def link(title: str, uid: str, *, keep_vars: bool = True) -> g.DashboardLink:
    """A link to another otel-ml dashboard (keeping time range and variables)."""
    return g.DashboardLink(title=title, uri=f"/d/{uid}", type="link", keepTime=True, includeVars=keep_vars,
                           icon="dashboard")


def dashboard(title: str, uid: str, *, description: str, panels: Iterable[Panel],
              variables: Sequence[g.Template] = (), annotations: Sequence[dict[str, Any]] = (),
              links: Sequence[g.DashboardLink] = (), time_from: str = "now-6h") -> g.Dashboard:
    """A dashboard in house style: UTC, 1-minute refresh, shared crosshair, auto panel ids, otel-ml tag."""
    builtin = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
               "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}
    return g.Dashboard(
        title=title, uid=uid, description=description, tags=["otel-ml"], timezone="utc", refresh="1m",
        graphTooltip=1, time=g.Time(time_from, "now"), panels=layout(panels),
        templating=g.Templating(list=list(variables)),
        annotations=g.Annotations(list=[builtin, *annotations]), links=list(links),
    ).auto_panel_ids()


def to_json(dash: g.Dashboard) -> str:
    """Deterministic JSON (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(dash.to_json_data(), cls=DashboardEncoder, sort_keys=True, indent=2) + "\n"
