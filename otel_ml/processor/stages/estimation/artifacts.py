"""The estimation stage's reference artifacts: found in the directory, reloaded when they change, never fatal.

``<directory>/<model>/<version>/`` serves that model version, else ``<directory>/<model>/default/``. An artifact
whose manifest (mtime, size) changed is reloaded; one that fails verification is refused with an error log and the
previously loaded one, if any, stays in use. Each (model, traffic version) gets a :class:`ModelRuntime`: the
artifact in use and the drift state against it, rebuilt when that artifact is reloaded or removed.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from otel_ml.drift.detectors import UnseenClassCounter, WindowedDrift
from otel_ml.estimation import ClassificationEstimator
from otel_ml.processor.config import DEFAULT_AUC_WINDOW
from otel_ml.processor.stages.estimation.windows import NoveltyWindow, ScoreWindow
from otel_ml.reference.artifact import MANIFEST, ArtifactError, ReferenceArtifact, load
from otel_ml.reference.fit import SET_SIZE
from otel_ml.semconv import attributes as a

_logger = logging.getLogger(__name__)

DEFAULT_DIR = "default"
"""Version directory used for traffic of a version without its own artifact."""
MAX_RUNTIMES_PER_MODEL = 16
"""Traffic versions of one model with their own drift, novelty and score windows (least recently used evicted)."""



@dataclass
class LoadedArtifact:
    """An artifact, the manifest signature it was loaded at, and its directory."""

    artifact: ReferenceArtifact
    signature: tuple[float, int]
    path: Path


@dataclass
class ModelRuntime:
    """Per (model, traffic version): the artifact in use, the drift windows against it, the novelty window (the
    pessimistic counters' rolling novel share) and the score window (estimated ROC AUC)."""

    loaded: LoadedArtifact
    features: dict[str, WindowedDrift] = field(default_factory=dict)
    prediction: WindowedDrift | None = None
    set_size: WindowedDrift | None = None
    unseen: UnseenClassCounter | None = None
    novelty: NoveltyWindow = field(default_factory=NoveltyWindow)
    scores: ScoreWindow | None = None

    @property
    def artifact(self) -> ReferenceArtifact:
        """The reference artifact in use."""
        return self.loaded.artifact

    @classmethod
    def build(cls, loaded: LoadedArtifact, auc_window: int = DEFAULT_AUC_WINDOW) -> ModelRuntime:
        """Fresh drift windows for ``loaded``'s distributions (and a score window of ``auc_window`` predictions
        for a classification estimator with scores)."""
        art = loaded.artifact
        rt = cls(loaded, {name: WindowedDrift(d) for name, d in art.feature_distributions.items()})
        pred = art.distribution("prediction")
        if pred is not None:
            rt.prediction = WindowedDrift(pred)
        size = art.distribution(SET_SIZE)
        if size is not None:
            rt.set_size = WindowedDrift(size)
        if art.classes:
            rt.unseen = UnseenClassCounter(art.classes)
        est = art.estimator
        if isinstance(est, ClassificationEstimator) and est.roles_.scores:
            rt.scores = ScoreWindow(auc_window, len(est.roles_.classes))
        return rt


class ArtifactDirectory:
    """The artifacts under ``directory`` and the runtimes of the traffic that uses them; not thread-safe."""

    def __init__(self, directory: str | Path, clock: Callable[[], float],
                 auc_window: int = DEFAULT_AUC_WINDOW) -> None:
        self.directory = Path(directory)
        self.clock = clock
        self.auc_window = auc_window
        self.last_scan = -math.inf
        self._loaded: dict[tuple[str, str], LoadedArtifact] = {}
        self._changed: set[str] = set()
        """Models whose artifacts were loaded, reloaded or removed since :meth:`take_reference_values`."""
        self.runtimes: OrderedDict[tuple[str, str], ModelRuntime] = OrderedDict()
        """(model, traffic version) -> runtime, for every version that sent predictions since its artifact loaded."""

    def scan(self) -> None:
        """Loads new and changed artifacts; drops removed ones. Never raises."""
        self.last_scan = self.clock()
        seen: set[tuple[str, str]] = set()
        try:
            model_dirs = [p for p in self.directory.iterdir() if p.is_dir()] if self.directory.is_dir() else []
        except OSError:
            _logger.exception("cannot list reference directory %s", self.directory)
            return
        for model_dir in model_dirs:
            try:
                version_dirs = [p for p in model_dir.iterdir() if (p / MANIFEST).is_file()]
            except OSError:
                continue
            for vdir in version_dirs:
                key = (model_dir.name, vdir.name)
                seen.add(key)
                try:
                    st = (vdir / MANIFEST).stat()
                except OSError:
                    continue
                signature = (st.st_mtime, st.st_size)
                current = self._loaded.get(key)
                if current is not None and current.signature == signature:
                    continue
                try:
                    art = load(vdir)
                except ArtifactError as exc:
                    _logger.error("refusing reference %s: %s%s", vdir, exc,
                                  " (keeping the previously loaded one)" if current else "")
                    if current is not None:
                        self._loaded[key] = LoadedArtifact(current.artifact, signature, vdir)
                    continue
                except Exception:  # a broken artifact must not stop the processor
                    _logger.exception("cannot load reference %s", vdir)
                    continue
                _logger.info("loaded reference %s (model %s, task %s)", vdir, art.model, art.task)
                self._loaded[key] = LoadedArtifact(art, signature, vdir)
                self._changed.add(key[0])
                self._drop_runtimes(vdir)
        for key in set(self._loaded) - seen:
            _logger.info("reference %s/%s removed", *key)
            self._drop_runtimes(self._loaded.pop(key).path)
            self._changed.add(key[0])

    def take_reference_values(self) -> dict[str, dict[str, set[str]]]:
        """For each model whose artifacts changed since the last call: the metric attribute values they know
        (versions with their own artifact, classes, feature names, reference bins, weak slices); an empty mapping
        when none is left."""
        out: dict[str, dict[str, set[str]]] = {}
        for model in self._changed:
            values: dict[str, set[str]] = {}
            for (name, version), loaded in self._loaded.items():
                if name != model:
                    continue
                art = loaded.artifact
                values.setdefault(a.ML_MODEL_VERSION, set())
                if version != DEFAULT_DIR:
                    values[a.ML_MODEL_VERSION].add(version)
                values.setdefault(a.ML_CLASS, set()).update(map(str, art.classes))
                values.setdefault(a.ML_FEATURE_NAME, set()).update(art.feature_distributions)
                # the reference bins and weak slices: PromQL's PSI and weak-slice shares need every one of them
                bins = values.setdefault(a.ML_BIN, set())
                for dist in (*art.feature_distributions.values(), art.distribution("prediction"),
                             art.distribution(SET_SIZE)):
                    if dist is not None:
                        bins.update(dist.labels)
                values.setdefault(a.ML_WEAK_SEGMENT, set()).update(w.name for w in art.weak_segments)
            out[model] = values
        self._changed.clear()
        return out

    def runtime_for(self, model: str, version: str) -> ModelRuntime | None:
        """The runtime of ``(model, version)`` traffic (its version's artifact, else the default), or ``None``.

        At most :data:`MAX_RUNTIMES_PER_MODEL` traffic versions of a model keep a runtime; a new one evicts the
        model's least recently used (junk ``ml.model.version`` values cannot grow the stage's memory; the metric
        side folds them into ``_other`` already). An evicted version that comes back starts fresh windows.
        """
        key = (model, version)
        rt = self.runtimes.get(key)
        if rt is not None:
            self.runtimes.move_to_end(key)
            return rt
        loaded = (self._loaded.get((model, version)) if version else None) or self._loaded.get((model, DEFAULT_DIR))
        if loaded is None:
            return None
        same_model = [k for k in self.runtimes if k[0] == model]
        for old in same_model[:max(0, len(same_model) - MAX_RUNTIMES_PER_MODEL + 1)]:
            del self.runtimes[old]
            _logger.info("model %s: dropped the drift windows of version %r (more than %d versions seen)", model,
                         old[1], MAX_RUNTIMES_PER_MODEL)
        rt = self.runtimes[key] = ModelRuntime.build(loaded, self.auc_window)
        return rt

    def _drop_runtimes(self, path: Path) -> None:
        for rkey in [k for k, rt in self.runtimes.items() if rt.loaded.path == path]:
            del self.runtimes[rkey]
