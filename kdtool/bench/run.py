"""Benchmark one model: init, latency, accuracy over a split; returns one JSON-ready record.

The record's keys are documented in :mod:`kdtool.bench.report`.

Example:
    >>> data = SplitData.from_fdata(load_fdata("FData", splits=("test",)), "test")  # doctest: +SKIP
    >>> rec, preds = bench_model("s.int8.tflite", data, select_runtime())          # doctest: +SKIP
    >>> rec["accuracy"], rec["latency_ms"]["median"]                   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdtool import __version__
from kdtool.bench.curves import calibration_field, roc_curves
from kdtool.bench.evaluate import check_data_shape, predict_proba
from kdtool.bench.latency import current_rss_mb, measure_latency, peak_rss_mb, summarize
from kdtool.bench.subgroups import SubgroupColumn, read_subgroup_column, subgroup_field
from kdtool.bench.tta import view_count
from kdtool.bench.uncertainty import (
    DEFAULT_BOOTSTRAP,
    interval_fields,
    reference_difference,
    resolve_class_of_concern,
)
from kdtool.data import FData
from kdtool.folds import read_groups
from kdtool.litert import Runtime
from kdtool.metrics import agreement, classification_report
from kdtool.tflite_model import LoadedModel, load_model, set_input

SCHEMA_VERSION = 1

#: A factory of progress callbacks: ``progress(label, total)`` is a context manager yielding ``update(n)``.
ProgressFactory = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@contextmanager
def no_progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """The silent progress factory."""
    yield lambda n: None


def _mode(model: LoadedModel) -> str:
    mode = model.sidecar.get("mode")
    if isinstance(mode, str) and mode:
        return mode
    # No sidecar: name it after the I/O types (a dynamic-range model reads as float32 here).
    return model.input.dtype.name


@dataclass
class SplitData:
    """One split of an FData folder, converted once for every model.

    Args:
        x: float32 images in [0, 1] (N, H, W, 3).
        labels: int64 labels (N,).
        class_names: K names.
        split: split name.
        source: the images file, for messages.
        groups: (N,) lesion id per image from the folder's ``image_ids.csv``, or None without one
            (the bootstrap then resamples images).
        subgroup: the ``--by`` column of ``image_ids.csv`` (:mod:`kdtool.bench.subgroups`), or None.
    """

    x: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    split: str
    source: str
    groups: np.ndarray | None = None
    subgroup: SubgroupColumn | None = None

    @classmethod
    def from_fdata(cls, fdata: FData, split: str, by: str | None = None) -> SplitData:
        """The split of a loaded FData folder; ``by`` names the ``image_ids.csv`` column of ``--by``."""
        labels = fdata.labels(split)
        groups = read_groups(fdata.root, split, len(labels))
        return cls(
            fdata.x(split),
            labels,
            list(fdata.class_names),
            split,
            str(Path(fdata.root) / f"X_{split}.npy"),
            groups,
            read_subgroup_column(fdata.root, split, len(labels), by) if by else None,
        )

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])


def model_predictions(
    model: LoadedModel, data: SplitData, progress: ProgressFactory = no_progress, tta: str = "none"
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, K), int64 top-1 predictions (N,)) of a loaded model on a split.

    With ``tta`` other than ``none`` the scores are averaged over that mode's views
    (:mod:`kdtool.bench.tta`) before the softmax.
    """
    check_data_shape(model, data.image_shape, len(data.class_names), data.source)
    with progress(f"accuracy {model.path.name}", len(data.x) * view_count(tta)) as update:
        probs = predict_proba(model, data.x, update, tta)
    return probs, probs.argmax(axis=1).astype(np.int64)


def bench_model(
    path: str | Path,
    data: SplitData,
    runtime: Runtime,
    threads: int = 1,
    runs: int = 200,
    warmup: int = 20,
    batch: int = 1,
    device: dict | None = None,
    reference: tuple[str, np.ndarray] | None = None,
    progress: ProgressFactory = no_progress,
    notes: list[str] | None = None,
    tta: str = "none",
    bootstrap: int = DEFAULT_BOOTSTRAP,
    class_of_concern: str | None = None,
) -> tuple[dict, np.ndarray]:
    """Benchmark one .tflite model on one split.

    Order, as LiteRT's benchmark_model: init (load + resize + allocate), ``warmup``
    untimed invokes, ``runs`` timed invokes (input: the split's first ``batch``
    images); then one pass over the split for accuracy.

    Args:
        path: the .tflite file.
        data: the split (:meth:`SplitData.from_fdata`).
        runtime: interpreter implementation.
        threads: num_threads.
        runs: timed invokes (0 skips latency: its values are null).
        warmup: untimed invokes first.
        batch: input batch size (the input tensor is resized to it).
        device: :func:`~kdtool.bench.device.device_facts` (computed once by the caller).
        reference: (name, top-1 predictions) of a reference model, for agreement.
        progress: progress factory (see :data:`ProgressFactory`).
        notes: list to append warning lines to.
        tta: test-time augmentation mode for the accuracy pass (:data:`kdtool.bench.tta.TTA_MODES`);
            ``images_per_second`` then counts that mode's views (invokes) per image.
        bootstrap: bootstrap resamples for the 95% intervals (0: none), over lesions when
            ``data.groups`` has them (:mod:`kdtool.bench.uncertainty`).
        class_of_concern: the class whose sensitivity at fixed specificities is reported;
            None: the melanoma class when there is one.

    Returns:
        (record, top-1 predictions as int64 (N,)).
    """
    rss_before = current_rss_mb()
    model = load_model(path, runtime, threads=threads, batch=batch)
    if notes is not None:
        notes.extend(model.notes)
    x, names = data.x, data.class_names
    check_data_shape(model, data.image_shape, len(names), data.source)
    side_names = model.sidecar.get("class_names")
    if notes is not None and isinstance(side_names, list) and side_names and side_names != names:
        notes.append(f"{model.path}: class names in the sidecar differ from the data's; using the data's")

    first = x[: model.batch]
    if len(first) < model.batch:  # a split smaller than the batch: repeat images
        first = np.resize(first, (model.batch, *first.shape[1:]))
    set_input(model, first)
    with progress(f"latency {model.path.name}", runs) as update:
        times = measure_latency(model.interpreter, runs, warmup, update if runs else None)
    views = view_count(tta)
    lat = summarize(times, model.batch / views)

    probs, preds = model_predictions(model, data, progress, tta)
    labels = data.labels
    rep = classification_report(labels, preds, names, probabilities=probs)
    coc = resolve_class_of_concern(class_of_concern, names, data.source)
    extra = interval_fields(labels, probs, names, coc, data.groups, "lesion_id", bootstrap)
    sub = data.subgroup
    subgroups = (
        subgroup_field(labels, probs, names, coc, sub.values, sub.name, data.groups, bootstrap, banding=sub.banding)
        if sub is not None
        else None
    )
    rss_after = current_rss_mb()
    dev = dict(device or {})
    record = {
        "schema": SCHEMA_VERSION,
        "model": model.path.name,
        "path": str(model.path),
        "mode": _mode(model),
        "size_bytes": model.size_bytes,
        "params": model.params(),
        "input_shape": list(model.input.shape),
        "input_dtype": model.input.dtype.name,
        "output_dtype": model.output.dtype.name,
        "input_quantization": model.input.quantization(),
        "output_quantization": model.output.quantization(),
        "split": data.split,
        "n_images": int(len(labels)),
        "class_names": list(names),
        "accuracy": rep["accuracy"],
        "balanced_accuracy": rep["balanced_accuracy"],
        "melanoma_sensitivity": rep.get("melanoma_sensitivity"),
        "melanoma_specificity": rep.get("melanoma_specificity"),
        "roc_auc_macro": rep.get("roc_auc_macro"),
        "ece": rep.get("ece"),
        "macro": rep["macro"],
        "weighted": rep["weighted"],
        "per_class": rep["per_class"],
        "confusion_matrix": rep["confusion_matrix"],
        **extra,
        "calibration": calibration_field(labels, probs, data.groups, bootstrap),
        "roc_curves": roc_curves(labels, probs, names),
        "subgroups": subgroups,
        "tta": tta,
        "tta_views": views,
        "operating_point": model.sidecar.get("operating_point"),
        "mean_confidence": rep.get("mean_confidence"),
        "reference": reference[0] if reference else None,
        "reference_agreement": agreement(preds, reference[1]) if reference else None,
        "reference_difference": (
            reference_difference(labels, preds, reference[1], names, data.groups, bootstrap) if reference else None
        ),
        "latency_ms": lat["latency_ms"],
        "images_per_second": lat["images_per_second"],
        "init_ms": model.init_ms,
        "peak_rss_mb": peak_rss_mb(),
        "model_rss_mb": (rss_after - rss_before) if rss_before is not None and rss_after is not None else None,
        "runs": int(runs),
        "warmup": int(warmup),
        "batch": model.batch,
        "threads": int(threads),
        "runtime": runtime.name,
        "runtime_version": runtime.version,
        "device": dev,
        "emulated": bool(dev.get("emulated", False)),
        "kdtool_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return record, preds
