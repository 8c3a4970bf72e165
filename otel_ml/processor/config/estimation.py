"""The ``reference:`` and ``relabel:`` sections, read by the estimation stage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from otel_ml.processor.config.validation import ConfigError, _int, _section, parse_duration

DEFAULT_REFERENCE_DIRECTORY: Final = "./references"
DEFAULT_RELOAD_INTERVAL_S: Final = 30.0
DEFAULT_RELABEL_PATH: Final = "./otel-ml-data/relabel.jsonl"
DEFAULT_RELABEL_MAX_SAMPLES: Final = 10_000


@dataclass(frozen=True, slots=True)
class ReferenceConfig:
    """Reference artifacts for the estimation/drift stage (``reference:``)."""

    directory: str = DEFAULT_REFERENCE_DIRECTORY
    reload_interval: float = DEFAULT_RELOAD_INTERVAL_S


@dataclass(frozen=True, slots=True)
class RelabelConfig:
    """Samples-to-relabel sink of the estimation stage (``relabel:``)."""

    path: str = DEFAULT_RELABEL_PATH
    max_samples: int = DEFAULT_RELABEL_MAX_SAMPLES


def _reference(raw: Mapping[str, Any]) -> ReferenceConfig | None:
    if raw.get("reference") is None:
        return None
    ex = "reference: {directory: ./references, reload_interval: 30s}"
    s = _section(raw, "reference", {"directory", "reload_interval"}, ex)
    directory = s.get("directory", DEFAULT_REFERENCE_DIRECTORY)
    if not isinstance(directory, str) or not directory:
        raise ConfigError("reference.directory", f"expected a directory path, got {directory!r}", ex)
    return ReferenceConfig(directory, parse_duration(s.get("reload_interval", DEFAULT_RELOAD_INTERVAL_S),
                                                     "reference.reload_interval", ex))


def _relabel(raw: Mapping[str, Any]) -> RelabelConfig:
    ex = "relabel: {path: ./otel-ml-data/relabel.jsonl, max_samples: 10000}"
    s = _section(raw, "relabel", {"path", "max_samples"}, ex)
    path = s.get("path", DEFAULT_RELABEL_PATH)
    if not isinstance(path, str) or not path:
        raise ConfigError("relabel.path", f"expected a file path, got {path!r}", ex)
    return RelabelConfig(path, _int(s.get("max_samples", DEFAULT_RELABEL_MAX_SAMPLES), "relabel.max_samples", ex))
