"""Fork safety: what a child process forked from an instrumented parent (gunicorn, multiprocessing) starts with.

In the child, ``os.register_at_fork`` hooks registered here:

* replace the export queue, its worker thread, its metrics and its transport with fresh ones (records queued by
  the parent stay the parent's: exported once, by the parent);
* draw a new prediction-id prefix (ids never collide between parent and children);
* renew ``service.instance.id`` when otel-ml (or the SDK's per-process default) chose it, so that the cumulative
  client metrics of pre-forked workers are separate series.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

from otel_ml.instrumentation.config import Settings, with_instance_id


class ForkAware(Protocol):
    """Something that re-initialises itself in a forked child."""

    def after_fork_in_child(self) -> None:
        """Called in the child right after ``fork()``."""
        ...


def register(obj: ForkAware) -> None:
    """Call ``obj.after_fork_in_child()`` in every forked child (held weakly: a collected object is skipped)."""
    if not hasattr(os, "register_at_fork"):  # pragma: no cover - Windows: no fork
        return
    ref = weakref.ref(obj)

    def after_in_child() -> None:
        target = ref()
        if target is not None:
            target.after_fork_in_child()

    os.register_at_fork(after_in_child=after_in_child)


def renew_generated_instance_id(settings: Settings) -> None:
    """A new ``service.instance.id`` in ``settings.resource`` unless the user set it explicitly."""
    if settings.generated_instance_id:
        res = dict(settings.resource)
        res.pop("service.instance.id", None)
        settings.resource = with_instance_id(res)
