"""Structural checks of generated PromQL: dashboard JSON and rule expressions (tests and the integration run).

Grafana cannot run on the build machines, so the JSON is checked offline: unique panel ids, grid positions inside
the 24 columns and not overlapping, a datasource on every panel and target, every ``$variable`` defined, and every
series name a query selects known (otel-ml semconv series, recording rules, an explicit allow-list).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from otel_ml.grafana_uids import DATASOURCE_UID

GRAFANA_BUILTINS = frozenset({"__rate_interval", "__range", "__interval", "__data", "__url_time_range", "__all",
                              "__range_s", "__interval_ms", "__name", "__field", "__series", "__value"})
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:[.:][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)
_NAME_MATCHER = re.compile(r'__name__\s*=~?\s*"([^"]*)"')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                       "group_right", "inf", "nan", "Inf", "NaN"})


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects (strings, matchers, ranges, label lists and functions removed).

    >>> sorted(metric_names('sum by (a) (rate(x_total{a=~"$m"}[5m])) / ignoring (b) y:z:w > bool 0.5'))
    ['x_total', 'y:z:w']
    """
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub("", text)
    return {m.group(1) for m in _IDENT.finditer(text)} - _KEYWORDS


@dataclass(frozen=True)
class Expression:
    """A PromQL expression found in a dashboard, with where it is."""

    where: str
    expr: str


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: dict[str, Any]) -> Iterator[Expression]:
    """Every PromQL expression of targets and annotations (variable queries: see :func:`variable_queries`)."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Expression(f"{dashboard['uid']}/{panel['title']}/{target['refId']}", target["expr"])
    for ann in dashboard.get("annotations", {}).get("list", []):
        if "expr" in ann:
            yield Expression(f"{dashboard['uid']}/annotation/{ann['name']}", ann["expr"])


def variable_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """``(variable, selector, label)`` of every ``label_values(selector, label)`` query variable."""
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = _LABEL_VALUES.match(query)
        if match is None:
            raise ValueError(f"variable {var['name']}: unsupported query {query!r}")
        yield var["name"], match.group(1) or "", match.group(2)


def selector_names(selector: str) -> set[str]:
    """Series names of a selector, including ``{__name__=~"a|b"}`` alternatives."""
    names = metric_names(selector)
    for match in _NAME_MATCHER.finditer(selector):
        names.update(match.group(1).split("|"))
    return names


def variables_used(text: str) -> set[str]:
    """``$name`` / ``${name}`` / ``${name:fmt}`` references in a text (Grafana builtins excluded)."""
    used = {a or b for a, b in _VAR.findall(text)}
    return {v for v in used if v not in GRAFANA_BUILTINS}


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def problems(dashboard: dict[str, Any], known_series: set[str]) -> list[str]:
    """Every structural problem of one dashboard (empty list: fine)."""
    out: list[str] = []
    uid = dashboard.get("uid")
    all_panels = list(panels(dashboard))
    ids = [p.get("id") for p in all_panels]
    if None in ids or len(set(ids)) != len(ids):
        out.append(f"{uid}: panel ids missing or not unique: {ids}")
    for i, a in enumerate(all_panels):
        pos = a.get("gridPos")
        if not pos or pos["x"] < 0 or pos["w"] <= 0 or pos["x"] + pos["w"] > 24 or pos["h"] <= 0:
            out.append(f"{uid}/{a.get('title')}: bad gridPos {pos}")
            continue
        for b in all_panels[i + 1:]:
            if b.get("gridPos") and _overlap(pos, b["gridPos"]):
                out.append(f"{uid}: panels {a.get('title')!r} and {b.get('title')!r} overlap")
        if a.get("type") != "row":
            if (a.get("datasource") or {}).get("uid") != DATASOURCE_UID:
                out.append(f"{uid}/{a.get('title')}: panel datasource is not {DATASOURCE_UID}")
            if not a.get("targets"):
                out.append(f"{uid}/{a.get('title')}: no targets")
            for t in a.get("targets", []):
                if (t.get("datasource") or {}).get("uid") != DATASOURCE_UID:
                    out.append(f"{uid}/{a.get('title')}/{t.get('refId')}: target without the Prometheus datasource")
    defined = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    texts = [e.expr for e in expressions(dashboard)]
    texts += [sel for _, sel, _ in variable_queries(dashboard)]
    texts += [str(p.get("fieldConfig", {})) for p in all_panels]
    texts += [str(p.get("title", "")) + str(t.get("legendFormat", ""))
              for p in all_panels for t in p.get("targets", [])]
    for text in texts:
        for var in variables_used(text) - defined:
            out.append(f"{uid}: variable ${var} used but not defined (in {text[:80]!r})")
    for e in expressions(dashboard):
        for name in metric_names(e.expr) - known_series:
            out.append(f"{e.where}: unknown series {name}")
    for var, sel, _ in variable_queries(dashboard):
        for name in selector_names(sel) - known_series:
            out.append(f"{uid}/variable {var}: unknown series {name}")
    return out
