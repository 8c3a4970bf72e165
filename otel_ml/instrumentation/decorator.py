"""``monitor.instrument``: wrap a predict function (sync or async, function or method) to record its predictions.

The wrapper times the call, re-raises the user's exception unchanged (after recording ``error.type``), returns
the very object the function returned, and queues ``(args, kwargs, result)`` by reference: extraction of the
prediction, scores, features and segments runs on the background worker (see
:mod:`otel_ml.instrumentation.interpret` for the default interpretation). Inputs and results are read after the
call returns, so do not mutate them in place afterwards.

Extractors (each optional):

* a callable ``f(args, kwargs, result)`` returning the value (it runs on the worker; if it raises, the event is
  dropped and counted as ``invalid``; ``prediction_id`` extractors run on the caller, guarded);
* a string: for ``features``, ``segments`` and ``prediction_id`` the name of a parameter of the function; for
  ``prediction`` and ``scores`` a key of a dict result (or an attribute of the result object).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from time import perf_counter_ns, time_ns
from typing import Any

import numpy as np

from otel_ml.compat import context_getter
from otel_ml.instrumentation.context import set_current
from otel_ml.instrumentation.errors import ConfigurationError
from otel_ml.instrumentation.ids import IDS
from otel_ml.instrumentation.interpret import interpret_single, is_batch_result
from otel_ml.instrumentation.records import CallErrorRecord, CallRecord, new_record
from otel_ml.instrumentation.spec import ModelSpec
from otel_ml.instrumentation.state import STATE

_logger = logging.getLogger(__name__)

_SINGLE_TYPES = frozenset({str, int, float, bool, np.float64, np.float32, np.int64, np.int32, np.bool_, np.str_})
"""Result types that are one prediction under the default interpretation (checked first, cheaply)."""

current_context = context_getter()

Extractor = Callable[[tuple[Any, ...], dict[str, Any], Any], Any]
_EXAMPLE = ("example: @monitor.instrument(features='x', prediction=lambda args, kwargs, result: result[0], "
            "scores='proba')")


def error_type(exc: BaseException) -> str:
    """OTel ``error.type`` of an exception: its qualified class name (module-qualified unless builtin)."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _param_getter(name: str, sig: inspect.Signature | None, what: str) -> Extractor:
    index: int | None = None
    if sig is not None:
        params = list(sig.parameters.values())
        names = [p.name for p in params]
        has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        if name not in names and not has_var_kw:
            raise ConfigurationError(
                f"{what}={name!r} is not a parameter of the instrumented function (parameters: {names}); {_EXAMPLE}")
        if name in names:
            p = params[names.index(name)]
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
                index = names.index(name)

    def get(args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Any:
        if index is not None and len(args) > index:
            return args[index]
        return kwargs.get(name)

    return get


def _result_getter(name: str) -> Extractor:
    def get(args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Any:
        if isinstance(result, dict):
            return result.get(name)
        return getattr(result, name, None)

    return get


def check_extractors(batch: Any = None, **extractors: Any) -> None:
    """Raise :class:`ConfigurationError` unless every extractor is ``None``, a callable or a name, and ``batch`` is
    ``None`` or a bool (called when ``monitor.instrument`` is called, before the function is known)."""
    for what, value in extractors.items():
        if value is not None and not isinstance(value, str) and not callable(value):
            raise ConfigurationError(
                f"{what} must be None, a callable (args, kwargs, result) -> value, or a name, got "
                f"{type(value).__name__}; {_EXAMPLE}")
    if batch is not None and not isinstance(batch, bool):
        raise ConfigurationError(f"batch must be None, True or False, got {batch!r}; {_EXAMPLE}")


def _extractor(value: Any, what: str, sig: inspect.Signature | None, param: bool) -> Extractor | None:
    check_extractors(**{what: value})
    if value is None:
        return None
    if isinstance(value, str):
        return _param_getter(value, sig, what) if param else _result_getter(value)
    return value  # type: ignore[no-any-return]


class CallSpec:
    """How one instrumented function's calls become predictions (built once, at decoration time)."""

    __slots__ = ("_first_arg", "batch", "features", "prediction", "prediction_id", "scores", "segments", "simple",
                 "spec")

    def __init__(self, spec: ModelSpec, func: Callable[..., Any], *, features: Any, prediction: Any, scores: Any,
                 prediction_id: Any, segments: Any, batch: bool | None) -> None:
        try:
            sig: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            sig = None
        params = list(sig.parameters.values()) if sig is not None else []
        skip_self = bool(params) and params[0].name in ("self", "cls") and not inspect.ismethod(func)
        self.spec = spec
        self.features = _extractor(features, "features", sig, True)
        self.segments = _extractor(segments, "segments", sig, True)
        self.prediction_id = _extractor(prediction_id, "prediction_id", sig, True)
        self.prediction = _extractor(prediction, "prediction", sig, False)
        self.scores = _extractor(scores, "scores", sig, False)
        check_extractors(batch=batch)
        self.batch = batch
        self._first_arg = 1 if skip_self else 0
        self.simple = batch is None and self.prediction_id is None and self.prediction is None

    def ids(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> str | Sequence[str]:
        """Prediction id(s) of a call (caller side: cheap, guarded by the wrapper)."""
        if self.simple:
            t = type(result)
            if t in _SINGLE_TYPES or (t is tuple and len(result) == 2 and type(result[0]) in _SINGLE_TYPES):
                return IDS.new_id()
        n: int | None
        if self.batch is None:
            n = is_batch_result(self.spec, result) if self.prediction is None else None
        else:
            n = len(self.prediction(args, kwargs, result) if self.prediction is not None else
                    (result[0] if type(result) is tuple else result)) if self.batch else None
        if self.prediction_id is not None:
            try:
                given = self.prediction_id(args, kwargs, result)
                if given is not None:
                    if n is None:
                        return str(given)
                    return [str(x) for x in given]
            except Exception:
                _logger.debug("otel-ml: prediction_id extractor failed; generating ids", exc_info=True)
        if n is not None:
            return IDS.new_batch(n)
        if type(result) is dict:
            given = result.get("prediction_id", result.get("id"))
            if given is not None:
                return str(given)
        return IDS.new_id()

    def extract(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> tuple[Any, Any, Any, Any]:
        """``(prediction, scores, features, segments)`` of a call (worker side)."""
        if self.prediction is None and self.scores is None:
            prediction, scores, _, segments = interpret_single(result)
        else:
            prediction = self.prediction(args, kwargs, result) if self.prediction is not None else None
            scores = self.scores(args, kwargs, result) if self.scores is not None else None
            segments = None
        if self.features is not None:
            features = self.features(args, kwargs, result)
        elif len(args) > self._first_arg:
            features = args[self._first_arg]
        else:
            features = next(iter(kwargs.values()), None) if kwargs else None
        if self.segments is not None:
            segments = self.segments(args, kwargs, result)
        return prediction, scores, features, segments


def _record_error(call: CallSpec, duration_ns: int, exc: BaseException) -> None:
    try:
        p = STATE.queue or STATE.resolve()
        if p.active:
            p.submit(CallErrorRecord(call.spec, duration_ns, error_type(exc)))
    except Exception:
        _logger.debug("otel-ml: failed to record an inference error", exc_info=True)


def _record(call: CallSpec, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any, duration_ns: int) -> None:
    try:
        ids = call.ids(args, kwargs, result)
        set_current(ids)
        p = STATE.queue or STATE.resolve()
        if p.active:
            p.submit(new_record(CallRecord, (call, time_ns(), ids, args, kwargs, result, current_context(),
                                             duration_ns)))
    except Exception:
        _logger.debug("otel-ml: failed to record a prediction", exc_info=True)


def wrap(call: CallSpec, func: Callable[..., Any]) -> Callable[..., Any]:
    """The instrumented version of ``func`` (async functions get an async wrapper)."""
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = perf_counter_ns()
            try:
                result = await func(*args, **kwargs)
            except Exception as exc:
                _record_error(call, perf_counter_ns() - t0, exc)
                raise
            _record(call, args, kwargs, result, perf_counter_ns() - t0)
            return result

        async_wrapper.__otel_ml_call__ = call  # type: ignore[attr-defined]
        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = perf_counter_ns()
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            _record_error(call, perf_counter_ns() - t0, exc)
            raise
        _record(call, args, kwargs, result, perf_counter_ns() - t0)
        return result

    wrapper.__otel_ml_call__ = call  # type: ignore[attr-defined]
    return wrapper
