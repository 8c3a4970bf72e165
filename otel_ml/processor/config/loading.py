"""The whole config and how it is read: file -> YAML -> ``${env:NAME}`` substitution -> :func:`from_mapping`
-> :class:`ProcessorConfig` (top-level keys here, each section in its own module).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from otel_ml.processor.config.estimation import ReferenceConfig, RelabelConfig, _reference, _relabel
from otel_ml.processor.config.limits import LimitsConfig, _limits
from otel_ml.processor.config.memory_limiter import MemoryLimiterConfig, _memory_limiter
from otel_ml.processor.config.metrics import MetricsConfig, _metrics
from otel_ml.processor.config.receivers import ReceiverConfig, _receiver
from otel_ml.processor.config.store import StoreConfig, _store, dsn_without_password
from otel_ml.processor.config.validation import ConfigError, parse_duration

DEFAULT_SHUTDOWN_GRACE_S: Final = 20.0

EXAMPLE: Final = """\
instance_id: replica-a
shutdown_grace: 20s
receiver:
  grpc: {endpoint: 0.0.0.0:4317}
  http: {endpoint: 0.0.0.0:4318, max_connections: 256}
  max_request_bytes: 16777216
  max_inflight_requests: 8
memory_limiter: {check_interval: 1s, limit_percentage: 80, spike_limit_percentage: 20}
store:
  backend: sqlite
  path: ./otel-ml-data/store.db
  label_window: 7d
  max_pending: 20000000
metrics:
  otlp: {endpoint: http://127.0.0.1:4317, protocol: grpc, interval: 10s}
  prometheus: {endpoint: 127.0.0.1:9464}
  cardinality_limit: 200
  cardinality_idle: 1d
  ranking_k: [1, 5, 10]
  auc_window: 10000
limits:
  prediction_id_bytes: 4096
  segments_per_record: 16
"""
"""A complete valid config (shown in error messages)."""


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    """The whole processor config."""

    instance_id: str = ""
    receiver: ReceiverConfig = field(default_factory=ReceiverConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    reference: ReferenceConfig | None = None
    relabel: RelabelConfig = field(default_factory=RelabelConfig)
    stages: tuple[str, ...] = ()
    stages_config: Mapping[str, Any] = field(default_factory=dict)
    memory_limiter: MemoryLimiterConfig | None = field(default_factory=MemoryLimiterConfig)
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE_S

    def resolved_instance_id(self) -> str:
        """``instance_id``, or hostname + a hash of the store's location when unset (stable across restarts).

        The location is the absolute SQLite path, or the PostgreSQL DSN without its password plus the schema.
        """
        if self.instance_id:
            return self.instance_id
        if self.store.backend == "postgres":
            where = f"{dsn_without_password(self.store.dsn)}/{self.store.schema}"
        else:
            where = str(Path(self.store.path).resolve())
        digest = hashlib.sha256(where.encode()).hexdigest()[:8]
        return f"{socket.gethostname()}-{digest}"


_TOP = {"instance_id", "receiver", "store", "metrics", "limits", "reference", "relabel", "stages", "stages_config",
        "memory_limiter", "shutdown_grace"}


def from_mapping(raw: Mapping[str, Any] | None) -> ProcessorConfig:
    """Validate a parsed YAML mapping.

    Raises:
        ConfigError: On the first invalid key.
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError("<root>", f"expected a mapping, got {type(raw).__name__}", EXAMPLE.replace("\n", "\n    "))
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise ConfigError(unknown[0], f"unknown key (known: {', '.join(sorted(_TOP))})",
                          EXAMPLE.replace("\n", "\n    "))
    instance_id = raw.get("instance_id") or ""
    if not isinstance(instance_id, str):
        raise ConfigError("instance_id", f"expected a string, got {instance_id!r}", "instance_id: replica-a")
    stages = raw.get("stages") or []
    if not isinstance(stages, list) or any(not isinstance(x, str) or ":" not in x for x in stages):
        raise ConfigError("stages", f"expected a list of 'module:factory' strings, got {stages!r}",
                          "stages: [mypackage.stages:create_stage]")
    stages_config = raw.get("stages_config") or {}
    if not isinstance(stages_config, Mapping):
        raise ConfigError("stages_config", "expected a mapping", "stages_config: {threshold: 0.5}")
    return ProcessorConfig(
        instance_id=instance_id, receiver=_receiver(raw), store=_store(raw), metrics=_metrics(raw),
        limits=_limits(raw), reference=_reference(raw), relabel=_relabel(raw), stages=tuple(stages),
        stages_config=dict(stages_config),
        memory_limiter=_memory_limiter(raw),
        shutdown_grace=parse_duration(raw.get("shutdown_grace", DEFAULT_SHUTDOWN_GRACE_S), "shutdown_grace",
                                      "shutdown_grace: 20s"),
    )


_ENV_REF = re.compile(r"\$\$|\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(raw: Any, environ: Mapping[str, str] | None = None, key: str = "") -> Any:
    """Replace ``${env:NAME}`` and ``${env:NAME:-default}`` in every string value (``$$`` is a literal ``$``).

    Substitution happens after YAML parsing, so a value from the environment is never parsed as YAML (a password
    with ``:`` or ``#`` stays a string), like the collector's ``${env:...}`` in configuration values.

    Raises:
        ConfigError: A referenced variable is unset and has no default.
    """
    env = os.environ if environ is None else environ
    if isinstance(raw, str):
        def one(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if value is None:
                if default is None:
                    raise ConfigError(key or "<root>", f"environment variable {name} is not set",
                                      f"${{env:{name}}} with {name} exported, or ${{env:{name}:-default}}")
                return default
            return value
        return _ENV_REF.sub(one, raw)
    if isinstance(raw, Mapping):
        return {k: substitute_env(v, env, f"{key}.{k}" if key else str(k)) for k, v in raw.items()}
    if isinstance(raw, list):
        return [substitute_env(v, env, f"{key}[{i}]") for i, v in enumerate(raw)]
    return raw


def load(path: str | Path) -> ProcessorConfig:
    """Read and validate a YAML config file (``${env:NAME}`` references are substituted, see :func:`substitute_env`).

    Raises:
        ConfigError: When the file cannot be read, is not YAML, a referenced variable is unset, or a key is invalid.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError("<file>", f"cannot read {path}: {exc}", "otel-ml processor --config processor.yaml") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"{path} is not valid YAML: {exc}", EXAMPLE.replace("\n", "\n    ")) from exc
    return from_mapping(substitute_env(raw))
