"""The reference artifact: a directory describing a model's evaluation set, safe to load (JSON + skops, no pickle).

Layout (format version :data:`FORMAT_VERSION`)::

    <dir>/manifest.json         format, format_version, model, version, task, created, otel_ml_version,
                                files: {name: sha256}  (every other file; checked on load)
    <dir>/schema.json           column roles (prediction, target, scores, features, segments), classes
    <dir>/metrics.json          evaluation-set metrics (baselines: accuracy, f1, roc_auc, mae, ...) and row count
    <dir>/distributions.json    per-feature, prediction, score and predictions-per-sample reference distributions
    <dir>/weak_segments.json    slices significantly below the overall quality (support, value, interval)
    <dir>/variability.json      per-row standard deviation of each baseline (metric -> sd): the standard error
                                of a window of n rows is sd * sqrt(1/n + 1/rows) (optional; see
                                :mod:`otel_ml.reference.variability`)
    <dir>/calibration.json      quality per bin of the confidence (classification: a reliability table) or of
                                the prediction (regression: mean absolute error per bin)
    <dir>/estimator.json        fitted correctness estimator: parameters, calibration curves, error margins
    <dir>/estimator.skops       its scikit-learn models (only when it has any), loaded with an explicit
                                trusted-type list

:func:`load` refuses, with :class:`ArtifactError`, a directory whose manifest is missing or of an unknown format
version, a file whose sha256 differs from the manifest (tampered or half-written), files not listed, and skops
files that contain types outside :data:`TRUSTED_TYPES`. The checksums detect accidental or partial modification;
they are not a signature (whoever can write the directory can rewrite the manifest): keep the reference directory
writable only by the people who fit references.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from otel_ml.drift.distribution import Distribution
from otel_ml.errors import DataError
from otel_ml.estimation import ESTIMATORS, Estimator

FORMAT = "otel-ml-reference"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SCHEMA = "schema.json"
METRICS = "metrics.json"
DISTRIBUTIONS = "distributions.json"
WEAK_SEGMENTS = "weak_segments.json"
CALIBRATION = "calibration.json"
VARIABILITY = "variability.json"
ESTIMATOR_JSON = "estimator.json"
ESTIMATOR_SKOPS = "estimator.skops"

TRUSTED_TYPES: tuple[str, ...] = (
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
)
"""Types skops may instantiate beyond its own defaults (scikit-learn's fitted gradient-boosting models)."""


class ArtifactError(DataError):
    """A reference artifact is missing, of an unknown version, tampered with or inconsistent."""


@dataclass
class WeakSegment:
    """A slice of the evaluation set whose quality is significantly below the overall level.

    Attributes:
        name: Slice label, e.g. ``region=apac`` or ``age=[30,40)`` (the ``ml.weak_segment`` metric value).
        kind: ``segment`` (a segment attribute), ``feature`` (a feature bin) or ``set_size`` (predictions per sample).
        column: The segment dimension, feature name or ``set_size``.
        bin: The segment value or the bin label of ``column``'s reference distribution.
        support: Evaluation-set rows in the slice.
        metric: Quality metric (``accuracy``, ``exact_match`` or ``mae``).
        value: The slice's metric.
        lower: Lower bound of its 95 % interval (Wilson for proportions, normal for means).
        upper: Upper bound.
        overall: The metric on the whole evaluation set.
    """

    name: str
    kind: str
    column: str
    bin: str
    support: int
    metric: str
    value: float
    lower: float
    upper: float
    overall: float

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WeakSegment:
        """Inverse of :meth:`to_json`."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass
class ReferenceArtifact:
    """In-memory reference of one model (and version): see the module docstring for the files.

    Attributes:
        model: ``ml.model.name``.
        version: ``ml.model.version`` the reference is for (``""`` = any version: the ``default`` directory).
        task: ``binary``, ``multiclass``, ``multilabel`` or ``regression``.
        schema: Column roles and classes (``prediction``, ``target``, ``scores``, ``features``, ``segments``,
            ``classes``).
        metrics: Evaluation-set metrics by :class:`~otel_ml.semconv.attributes.QualityMetric` name, plus ``rows``.
        distributions: Reference distributions: ``features`` (by name), ``prediction``, ``score``, ``set_size``.
        weak_segments: Weak slices, weakest first.
        estimator: The fitted correctness estimator, or None (no usable evaluation set).
        created: ISO-8601 creation time (UTC).
        calibration: Quality per bin: ``variable`` (``confidence`` or ``prediction``), ``metric``, ``labels``,
            ``mean`` (mean of the variable per bin), ``quality`` and ``count``; empty when not applicable.
        variability: Per-row standard deviation of each baseline (metric name -> sd); empty for artifacts fitted
            before otel-ml recorded it.
    """

    model: str
    version: str
    task: str
    schema: dict[str, Any]
    metrics: dict[str, float]
    distributions: dict[str, Any] = field(default_factory=dict)
    weak_segments: list[WeakSegment] = field(default_factory=list)
    estimator: Estimator | None = None
    created: str = ""
    calibration: dict[str, Any] = field(default_factory=dict)
    variability: dict[str, float] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        """Known classes (empty for regression)."""
        return list(self.schema.get("classes", []))

    @property
    def feature_distributions(self) -> dict[str, Distribution]:
        """Per-feature reference distributions."""
        return dict(self.distributions.get("features", {}))

    def distribution(self, name: str) -> Distribution | None:
        """``prediction``, ``score`` or ``set_size`` distribution when present."""
        dist = self.distributions.get(name)
        return dist if isinstance(dist, Distribution) else None

    # --- persistence -------------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Writes the artifact to ``directory`` (created; existing artifact files replaced) and returns its path.

        Files are written next to the target and renamed, the manifest last, so a reader never sees a manifest
        pointing at half-written files.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if not self.created:
            self.created = datetime.now(UTC).isoformat(timespec="seconds")
        files: dict[str, bytes] = {
            SCHEMA: _dumps(self.schema),
            METRICS: _dumps(self.metrics),
            DISTRIBUTIONS: _dumps(_distributions_json(self.distributions)),
            WEAK_SEGMENTS: _dumps([w.to_json() for w in self.weak_segments]),
        }
        if self.calibration:
            files[CALIBRATION] = _dumps(self.calibration)
        if self.variability:
            files[VARIABILITY] = _dumps(self.variability)
        if self.estimator is not None:
            state, objects = self.estimator.to_state()
            files[ESTIMATOR_JSON] = _dumps(state)
            if objects:
                import skops.io as sio

                files[ESTIMATOR_SKOPS] = sio.dumps(dict(objects))
        for stale in (ESTIMATOR_JSON, ESTIMATOR_SKOPS, CALIBRATION, VARIABILITY):
            if stale not in files and (out / stale).exists():
                (out / stale).unlink()
        for name, data in files.items():
            _atomic_write(out / name, data)
        from otel_ml import __version__

        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "model": self.model, "version": self.version,
            "task": self.task, "created": self.created, "otel_ml_version": __version__,
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
        }
        _atomic_write(out / MANIFEST, _dumps(manifest))
        return out


def load(directory: str | os.PathLike[str]) -> ReferenceArtifact:
    """Loads and verifies an artifact directory.

    Raises:
        ArtifactError: Missing manifest, unknown format or version, checksum mismatch, unlisted or missing file,
            untrusted types in the skops file, or inconsistent content.
    """
    root = Path(directory)
    manifest = read_manifest(root)
    listed = manifest["files"]
    if not isinstance(listed, dict) or not {SCHEMA, METRICS, DISTRIBUTIONS, WEAK_SEGMENTS} <= set(listed):
        raise ArtifactError(f"{root}: manifest lists no complete artifact (files: {sorted(listed)})")
    present = {p.name for p in root.iterdir() if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")}
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise ArtifactError(f"{root}: files not in the manifest: {unlisted} (tampered or foreign files)")
    blobs: dict[str, bytes] = {}
    for name, digest in listed.items():
        path = root / name
        if not path.is_file():
            raise ArtifactError(f"{root}: manifest lists {name} but it is missing")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ArtifactError(f"{root}: {name} does not match its sha256 in the manifest (tampered or corrupt)")
        blobs[name] = data
    try:
        schema = json.loads(blobs[SCHEMA])
        metrics = json.loads(blobs[METRICS])
        distributions = _distributions_from_json(json.loads(blobs[DISTRIBUTIONS]))
        weak = [WeakSegment.from_json(w) for w in json.loads(blobs[WEAK_SEGMENTS])]
        calibration = json.loads(blobs[CALIBRATION]) if CALIBRATION in blobs else {}
        variability = {str(k): float(v) for k, v in json.loads(blobs[VARIABILITY]).items()} \
            if VARIABILITY in blobs else {}
        estimator = None
        if ESTIMATOR_JSON in blobs:
            estimator = _load_estimator(json.loads(blobs[ESTIMATOR_JSON]), blobs.get(ESTIMATOR_SKOPS))
    except ArtifactError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{root}: inconsistent artifact content: {exc}") from exc
    return ReferenceArtifact(
        model=str(manifest["model"]), version=str(manifest["version"]), task=str(manifest["task"]), schema=schema,
        metrics=metrics, distributions=distributions, weak_segments=weak, estimator=estimator,
        created=str(manifest["created"]), calibration=calibration, variability=variability,
    )


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads and validates ``manifest.json`` only (format and version).

    Raises:
        ArtifactError: Missing or unreadable manifest, another format, an unknown format version.
    """
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise ArtifactError(f"{directory}: no {MANIFEST}: not a reference artifact "
                            "(create one with `otel-ml reference fit ... --out DIR`)") from exc
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not an {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: unknown format_version {manifest.get('format_version')!r}; this otel-ml "
                            f"reads version {FORMAT_VERSION}: refit the reference with this otel-ml version")
    for key in ("model", "version", "task", "created", "files"):
        if key not in manifest:
            raise ArtifactError(f"{path}: manifest lacks {key!r}")
    return manifest


def _load_estimator(state: Mapping[str, Any],
                    skops_blob: bytes | None) -> Estimator:
    cls = ESTIMATORS.get(str(state.get("key")))
    if cls is None:
        raise ArtifactError(f"unknown estimator {state.get('key')!r} in artifact; known: {sorted(ESTIMATORS)}")
    objects: dict[str, Any] = {}
    if skops_blob is not None:
        import skops.io as sio

        untrusted = set(sio.get_untrusted_types(data=skops_blob))
        extra = sorted(untrusted - set(TRUSTED_TYPES))
        if extra:
            raise ArtifactError(f"estimator.skops contains untrusted types {extra}: refusing to load")
        objects = dict(sio.loads(skops_blob, trusted=sorted(untrusted)))
    return cls.from_state(state, objects)


def _distributions_json(dists: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"features": {k: d.to_json() for k, d in dists.get("features", {}).items()}}
    for key, value in dists.items():
        if key != "features" and isinstance(value, Distribution):
            out[key] = value.to_json()
    return out


def _distributions_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"features": {k: Distribution.from_json(v) for k, v in data.get("features", {}).items()}}
    for key, value in data.items():
        if key != "features":
            out[key] = Distribution.from_json(value)
    return out


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n").encode()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
