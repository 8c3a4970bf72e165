"""Validation helpers of every config section: :class:`ConfigError` and the checks of single values.

Each check takes the key (for the message) and a valid example to show; it returns the value or raises
:class:`ConfigError`. Durations are ``30s``, ``5m``, ``7d``, ``250ms`` or a number of seconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from otel_ml.errors import ConfigurationError


class ConfigError(ConfigurationError):
    """The processor config is invalid; the message names the key and shows a valid example."""

    def __init__(self, key: str, problem: str, example: str) -> None:
        super().__init__(f"invalid processor config at `{key}`: {problem}\n  valid example:\n    {example}")
        self.key = key


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any, key: str, example: str) -> float:
    """Seconds from ``30s``, ``5m``, ``7d``, ``250ms`` or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a duration, got {value!r}", example)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(key, f"expected a duration like 30s, 5m, 7d; got {value!r}", example)
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(key, f"must be positive, got {value!r}", example)
    return seconds


def _section(raw: Mapping[str, Any], name: str, allowed: set[str], example: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(name, f"expected a mapping, got {type(value).__name__}", example)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(allowed))})", example)
    return dict(value)


def _int(value: Any, key: str, example: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, f"expected an integer >= {minimum}, got {value!r}", example)
    return value


_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]*):\d{1,5}$")


def _host_port(value: Any, key: str, example: str) -> str:
    if not isinstance(value, str) or not _HOST_PORT.match(value) or int(value.rsplit(":", 1)[1]) > 65535:
        raise ConfigError(key, f"expected host:port (IPv6: [::1]:4317), got {value!r}", example)
    return value


def _mapping(value: Any, key: str, allowed: set[str], example: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping, got {value!r}", example)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(allowed))})", example)
    return dict(value)


def _file(value: Any, key: str, example: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"expected a file path, got {value!r}", example)
    if not Path(value).is_file():
        raise ConfigError(key, f"{value} does not exist or is not a file", example)
    return value


def _min_duration(value: Any, key: str, example: str, minimum: float) -> float:
    seconds = parse_duration(value, key, example)
    if seconds < minimum:
        raise ConfigError(key, f"must be at least {minimum:g}s, got {value!r}", example)
    return seconds
