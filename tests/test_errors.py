"""One exception root: every exception class defined anywhere in ``otel_ml`` derives from ``OtelMLError``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import otel_ml
from otel_ml.errors import ConfigurationError, DataError, OtelMLError, StoreError


def _modules() -> list[str]:
    names = [otel_ml.__name__]
    for info in pkgutil.walk_packages(otel_ml.__path__, prefix=f"{otel_ml.__name__}."):
        if info.name.rsplit(".", 1)[-1] == "__main__":  # runs the CLI when imported
            continue
        names.append(info.name)
    return names


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith(f"{otel_ml.__name__}."):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_walk_sees_the_known_exception_classes():
    found = _exception_classes()
    # The walk must reach nested packages (store, stages) and optional-dependency modules, or the check is hollow.
    for name in (
        "otel_ml.processor.config.validation.ConfigError",
        "otel_ml.processor.store.sqlite.schema.StoreFormatError",
        "otel_ml.processor.decode.result.Reject",
        "otel_ml.reference.artifact.ArtifactError",
        "otel_ml.estimation._inputs.EstimationError",
    ):
        assert name in found


def test_every_exception_class_derives_from_the_root():
    outside = sorted(name for name, cls in _exception_classes().items() if not issubclass(cls, OtelMLError))
    assert outside == []


def test_exactly_one_configuration_error():
    classes = _exception_classes()
    named = sorted(name for name in classes if name.rsplit(".", 1)[-1] == "ConfigurationError")
    assert named == ["otel_ml.errors.ConfigurationError"]
    assert otel_ml.ConfigurationError is ConfigurationError
    assert otel_ml.OtelMLError is OtelMLError
    config_errors = sorted(name for name, cls in classes.items() if "Config" in name.rsplit(".", 1)[-1])
    assert all(issubclass(classes[name], ConfigurationError) for name in config_errors), config_errors


@pytest.mark.parametrize(
    ("kind", "builtin"), [(ConfigurationError, ValueError), (DataError, ValueError), (StoreError, RuntimeError)]
)
def test_kinds_keep_the_builtin_base_callers_catch(kind, builtin):
    assert issubclass(kind, OtelMLError)
    assert issubclass(kind, builtin)


def test_processor_config_error_keeps_its_message_and_key():
    from otel_ml.processor.config import ConfigError

    err = ConfigError("store.path", "expected a file path", "store: {path: ./x.db}")
    assert isinstance(err, ConfigurationError)
    assert err.key == "store.path"
    assert str(err).startswith("invalid processor config at `store.path`: expected a file path")
