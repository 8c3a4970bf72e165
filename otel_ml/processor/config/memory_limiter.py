"""The ``memory_limiter:`` section (keys as in the collector's ``memory_limiter`` processor)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from otel_ml.processor.config.validation import ConfigError, _int, _section, parse_duration

DEFAULT_MEMORY_CHECK_INTERVAL_S: Final = 1.0
DEFAULT_MEMORY_LIMIT_PERCENTAGE: Final = 80
DEFAULT_MEMORY_SPIKE_LIMIT_PERCENTAGE: Final = 20


@dataclass(frozen=True, slots=True)
class MemoryLimiterConfig:
    """Memory limiter (``memory_limiter:``), keys as in the collector's ``memory_limiter`` processor.

    The hard limit is ``limit_mib`` (or ``limit_percentage`` of the cgroup's memory limit, else of the host's
    memory); the soft limit is the hard limit minus ``spike_limit_mib`` (or ``spike_limit_percentage``; default
    20 % of the hard limit). See :mod:`otel_ml.processor.memory`.
    """

    check_interval: float = DEFAULT_MEMORY_CHECK_INTERVAL_S
    limit_mib: int | None = None
    spike_limit_mib: int | None = None
    limit_percentage: int | None = DEFAULT_MEMORY_LIMIT_PERCENTAGE
    spike_limit_percentage: int | None = DEFAULT_MEMORY_SPIKE_LIMIT_PERCENTAGE

    def limits(self, total_bytes: int) -> tuple[int, int]:
        """``(soft, hard)`` limits in bytes, given the memory available to the process (cgroup or host)."""
        if self.limit_mib is not None:
            hard = self.limit_mib * 2**20
            spike = self.spike_limit_mib * 2**20 if self.spike_limit_mib is not None else hard // 5
        else:
            hard = total_bytes * (self.limit_percentage or 0) // 100
            spike = (total_bytes * self.spike_limit_percentage // 100 if self.spike_limit_percentage is not None
                     else hard // 5)
        return max(hard - spike, 0), hard


def _memory_limiter(raw: Mapping[str, Any]) -> MemoryLimiterConfig | None:
    if "memory_limiter" in raw and raw["memory_limiter"] is None:
        return None
    ex = "memory_limiter: {check_interval: 1s, limit_mib: 1024, spike_limit_mib: 256}"
    s = _section(raw, "memory_limiter", {"check_interval", "limit_mib", "spike_limit_mib", "limit_percentage",
                                         "spike_limit_percentage"}, ex)
    check = parse_duration(s.get("check_interval", DEFAULT_MEMORY_CHECK_INTERVAL_S), "memory_limiter.check_interval",
                           ex)
    if s.get("limit_mib") is not None:
        if s.get("limit_percentage") is not None or s.get("spike_limit_percentage") is not None:
            raise ConfigError("memory_limiter.limit_percentage", "set either limit_mib (+ spike_limit_mib) or "
                              "limit_percentage (+ spike_limit_percentage), not both", ex)
        limit = _int(s["limit_mib"], "memory_limiter.limit_mib", ex, 64)
        spike = s.get("spike_limit_mib")
        if spike is not None and (_int(spike, "memory_limiter.spike_limit_mib", ex) >= limit):
            raise ConfigError("memory_limiter.spike_limit_mib", f"must be below limit_mib ({limit})", ex)
        return MemoryLimiterConfig(check, limit_mib=limit, spike_limit_mib=spike, limit_percentage=None,
                                   spike_limit_percentage=None)
    if s.get("spike_limit_mib") is not None:
        raise ConfigError("memory_limiter.spike_limit_mib", "needs limit_mib", ex)
    pex = "memory_limiter: {limit_percentage: 80, spike_limit_percentage: 20}"
    pct = _int(s.get("limit_percentage", DEFAULT_MEMORY_LIMIT_PERCENTAGE), "memory_limiter.limit_percentage", pex)
    if pct > 100:
        raise ConfigError("memory_limiter.limit_percentage", f"expected a percentage <= 100, got {pct}", pex)
    spike_pct = s.get("spike_limit_percentage", DEFAULT_MEMORY_SPIKE_LIMIT_PERCENTAGE if "limit_percentage" not in s
                      else None)
    if spike_pct is not None and _int(spike_pct, "memory_limiter.spike_limit_percentage", pex) >= pct:
        raise ConfigError("memory_limiter.spike_limit_percentage", f"must be below limit_percentage ({pct})", pex)
    return MemoryLimiterConfig(check, limit_percentage=pct, spike_limit_percentage=spike_pct)
