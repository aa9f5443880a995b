"""Run a .tflite with kdtool bench's interpreter wrapper and compare it with its Keras model (numpy only).

The check runs on the VALIDATION split: accuracy, balanced accuracy and macro-F1
of both models, the drops (in percentage points, Keras minus TFLite), per-class
recall drops and top-1 agreement, with 95% intervals: a percentile bootstrap of
the TFLite accuracy and balanced accuracy, and a paired bootstrap of the drops
(both models' decisions resampled together), over lesions when the data's
``image_ids.csv`` names them, else over images (:mod:`kdtool.intervals`). The
``--max-drop`` gate reads the drop's point estimate. The .tflite runs through the same
TensorFlow-free wrapper (:mod:`kdtool.litert`, :mod:`kdtool.tflite_model`) and
the same quantize/dequantize (:mod:`kdtool.quant`) as ``kdtool bench``, so the
check and ``kdtool bench`` feed a model the same integers and read back
the same scores.

Example:
    >>> logits = run_tflite(tflite_bytes, fd.x("val"))                     # doctest: +SKIP
    >>> chk = compare(keras_logits, logits, fd.labels("val"), fd.class_names, max_drop=1.0)  # doctest: +SKIP
    >>> chk["accuracy_drop"], chk["passed"]                               # doctest: +SKIP
    (0.23, True)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from kdtool.errors import InputError
from kdtool.export.objectives import decision_scores
from kdtool.intervals import bootstrap_intervals
from kdtool.litert import captured_stderr_fd, open_interpreter, select_runtime
from kdtool.metrics import agreement, classification_report
from kdtool.tflite_model import load_model, predict_scores


def _without_delegates(model_content: bytes):
    """An interpreter without XNNPACK, so every builtin op and tensor shows."""
    return open_interpreter(model_content, select_runtime(), delegates=False)


def _tensor_record(d: dict) -> dict:
    scale, zp = d["quantization"]
    return {
        "name": d["name"],
        "shape": [int(v) for v in d["shape"]],
        "shape_signature": [int(v) for v in d.get("shape_signature", d["shape"])],
        "dtype": np.dtype(d["dtype"]).name,
        "quantization": {"scale": float(scale), "zero_point": int(zp)},
    }


def io_details(model_content: bytes) -> dict:
    """Input and output tensor facts of a .tflite: name, shape, dtype, quantization.

    ``quantization`` is ``{"scale", "zero_point"}``; scale 0.0 means "not quantized"
    (the TFLite convention), as for float32 tensors.

    Args:
        model_content: the .tflite bytes.

    Returns:
        ``{"input": {...}, "output": {...}}``.

    Example:
        >>> io_details(tflite_bytes)["input"]["dtype"]  # doctest: +SKIP
        'int8'
    """
    interp = _without_delegates(model_content)
    return {
        "input": _tensor_record(interp.get_input_details()[0]),
        "output": _tensor_record(interp.get_output_details()[0]),
    }


def graph_summary(model_content: bytes) -> dict:
    """Op names and tensor dtype counts of a .tflite (no delegate, so every builtin op shows).

    Args:
        model_content: the .tflite bytes.

    Returns:
        ``{"ops": [sorted op names], "tensor_dtypes": {dtype name: count}}``.

    Example:
        >>> graph_summary(tflite_bytes)["ops"][:2]  # doctest: +SKIP
        ['CONV_2D', 'DEPTHWISE_CONV_2D']
    """
    interp = _without_delegates(model_content)
    with captured_stderr_fd([]):
        interp.allocate_tensors()
    dtypes: dict[str, int] = {}
    for t in interp.get_tensor_details():
        name = np.dtype(t["dtype"]).name
        dtypes[name] = dtypes.get(name, 0) + 1
    try:
        ops = sorted({op["op_name"] for op in interp._get_ops_details()})  # private: no public API
    except Exception:  # the private API may change
        ops = []
    return {"ops": ops, "tensor_dtypes": dict(sorted(dtypes.items()))}


def run_tflite(model_content: bytes, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run a .tflite classifier on float32 [0, 1] images, as ``kdtool bench`` does.

    The model is loaded by :func:`kdtool.tflite_model.load_model` and run by
    :func:`kdtool.tflite_model.predict_scores`, so inputs are quantized and outputs
    dequantized by :mod:`kdtool.quant` exactly as on the device. The batch
    dimension is resized to ``batch_size`` (the last batch padded); a model that
    refuses resizing runs at its own batch size.

    Args:
        model_content: the .tflite bytes.
        x: float32 images (N, H, W, 3) in [0, 1].
        batch_size: images per invoke.

    Returns:
        float32 (N, K) dequantized outputs (logits).

    Example:
        >>> run_tflite(tflite_bytes, fd.x("val")).shape  # doctest: +SKIP
        (852, 7)
    """
    x = np.asarray(x, dtype=np.float32)
    runtime, threads = select_runtime(), max(1, os.cpu_count() or 1)
    try:
        model = load_model(model_content, runtime, threads=threads, batch=max(1, min(int(batch_size), len(x))))
    except InputError:  # the batch dimension cannot be resized
        model = load_model(model_content, runtime, threads=threads)
    return predict_scores(model, x)


def _headline(report: dict) -> dict:
    return {
        "accuracy": report["accuracy"],
        "balanced_accuracy": report["balanced_accuracy"],
        "macro_f1": report["macro"]["f1"],
        "per_class_recall": {k: v["recall"] for k, v in report["per_class"].items()},
        "melanoma_sensitivity": report.get("melanoma_sensitivity"),
    }


def _pts(a: float, b: float) -> float:
    return round(100.0 * (a - b), 4)


#: The check's bootstrap: resamples and seed (the same data give the same intervals).
CHECK_BOOTSTRAP, CHECK_SEED = 1000, 0


def check_intervals(
    labels: np.ndarray,
    keras_pred: np.ndarray,
    tflite_pred: np.ndarray,
    num_classes: int,
    groups: np.ndarray | None = None,
    n_boot: int = CHECK_BOOTSTRAP,
    seed: int = CHECK_SEED,
) -> dict[str, list[float] | None]:
    """95% intervals of the TFLite accuracy and balanced accuracy, and of the drops from Keras (paired).

    Both models' decisions are resampled together, so the drop's interval is a paired bootstrap
    difference (:func:`kdtool.intervals.paired_bootstrap_difference` computed on the same resamples).

    Args:
        labels: (N,) integer labels.
        keras_pred: (N,) the Keras model's top-1 predictions.
        tflite_pred: (N,) the .tflite's, for the same images.
        num_classes: K.
        groups: (N,) lesion ids to resample whole lesions, or None for images.
        n_boot: resamples.
        seed: the bootstrap's seed.

    Returns:
        ``{"tflite_accuracy", "tflite_balanced_accuracy"}`` as fractions and ``{"accuracy_drop",
        "balanced_accuracy_drop"}`` in points (Keras minus TFLite), each ``[low, high]``.

    Example:
        >>> y = np.array([0, 1] * 10)
        >>> check_intervals(y, y, y, 2, n_boot=50)["accuracy_drop"]   # identical decisions: no drop at all
        [0.0, 0.0]
    """

    def metrics(y: np.ndarray, both: np.ndarray) -> dict[str, float]:
        k, t = decision_scores(y, both[:, 0], num_classes), decision_scores(y, both[:, 1], num_classes)
        return {
            "tflite_accuracy": t["accuracy"],
            "tflite_balanced_accuracy": t["balanced_accuracy"],
            "accuracy_drop": 100.0 * (k["accuracy"] - t["accuracy"]),
            "balanced_accuracy_drop": 100.0 * (k["balanced_accuracy"] - t["balanced_accuracy"]),
        }

    both = np.stack([np.asarray(keras_pred), np.asarray(tflite_pred)], axis=1)
    ivs = bootstrap_intervals(metrics, np.asarray(labels), both, groups, n_boot, seed)
    return {key: iv.as_list() for key, iv in ivs.items()}


def compare(
    keras_logits: np.ndarray,
    tflite_logits: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    max_drop: float = 1.0,
    split: str = "val",
    groups: np.ndarray | None = None,
    n_boot: int = CHECK_BOOTSTRAP,
) -> dict:
    """Compare a Keras model and its .tflite on the same images.

    Args:
        keras_logits: (N, K) Keras outputs.
        tflite_logits: (N, K) dequantized .tflite outputs.
        labels: (N,) integer labels.
        class_names: K names.
        max_drop: the accuracy drop (percentage points) above which ``passed`` is False; the gate
            reads the point estimate, not its interval.
        split: the split's name, recorded.
        groups: (N,) lesion ids (:func:`kdtool.folds.read_groups`) to resample whole lesions, or None.
        n_boot: bootstrap resamples of the intervals.

    Returns:
        A JSON-ready dict: ``split``, ``n``, ``keras`` and ``tflite`` (accuracy,
        balanced_accuracy, macro_f1 as fractions, per_class_recall, melanoma_sensitivity),
        ``accuracy_drop``, ``balanced_accuracy_drop``, ``macro_f1_drop`` and
        ``per_class_recall_drop`` in percentage points (Keras minus TFLite; positive = worse),
        ``agreement`` (top-1, fraction), ``max_abs_logit_diff``, ``max_drop``, ``passed``; ``ci95``
        (:func:`check_intervals`) and ``bootstrap`` (``n``, ``seed``, ``groups``, ``n_groups``).
    """
    keras_logits, tflite_logits = np.asarray(keras_logits), np.asarray(tflite_logits)
    kp, tp = keras_logits.argmax(axis=1), tflite_logits.argmax(axis=1)
    k = _headline(classification_report(labels, kp, class_names))
    t = _headline(classification_report(labels, tp, class_names))
    acc_drop = _pts(k["accuracy"], t["accuracy"])
    return {
        "split": split,
        "n": int(len(labels)),
        "units": "metrics are fractions in [0, 1]; *_drop are percentage points, Keras minus TFLite (ci95 likewise)",
        "keras": k,
        "tflite": t,
        "accuracy_drop": acc_drop,
        "balanced_accuracy_drop": _pts(k["balanced_accuracy"], t["balanced_accuracy"]),
        "macro_f1_drop": _pts(k["macro_f1"], t["macro_f1"]),
        "per_class_recall_drop": {c: _pts(k["per_class_recall"][c], t["per_class_recall"][c]) for c in class_names},
        "agreement": agreement(kp, tp),
        "max_abs_logit_diff": float(np.abs(keras_logits - tflite_logits).max()) if keras_logits.size else 0.0,
        "max_drop": float(max_drop),
        "passed": bool(acc_drop <= max_drop),
        "gate": "accuracy_drop (point estimate) <= max_drop",
        "ci95": check_intervals(labels, kp, tp, len(class_names), groups, n_boot),
        "interval_method": "95% percentile bootstrap (TFLite metrics); paired bootstrap (drops)",
        "bootstrap": {
            "n": int(n_boot),
            "seed": CHECK_SEED,
            "groups": "lesion_id" if groups is not None else "image",
            "n_groups": int(len(np.unique(groups))) if groups is not None else int(len(labels)),
        },
    }


# ----------------------------------------------------------------------------- printing


def format_table(rows: Sequence[dict]) -> str:
    """The check table: one row per exported file.

    Args:
        rows: dicts with ``name``, ``mode``, ``size_bytes``, ``ratio_to_float32`` and ``check``.
    """

    def pct(v):
        return f"{100 * v:6.2f}"

    w = max([26, *(len(r["name"]) for r in rows)])
    wm = max([8, *(len(r["mode"]) for r in rows)])
    head = (
        f"{'model':<{w}} {'mode':<{wm}} {'KB':>8} {'xf32':>5} {'acc K':>6} {'acc T':>6} {'drop':>6} "
        f"{'bal K':>6} {'bal T':>6} {'F1 K':>6} {'F1 T':>6} {'agree':>6}  gate"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        c = r["check"]
        ratio = r.get("ratio_to_float32")
        lines.append(
            f"{r['name']:<{w}} {r['mode']:<{wm}} {r['size_bytes'] / 1024:8.1f} "
            f"{(f'{ratio:.2f}' if ratio else '-'):>5} {pct(c['keras']['accuracy'])} {pct(c['tflite']['accuracy'])} "
            f"{c['accuracy_drop']:+6.2f} {pct(c['keras']['balanced_accuracy'])} "
            f"{pct(c['tflite']['balanced_accuracy'])} "
            f"{pct(c['keras']['macro_f1'])} {pct(c['tflite']['macro_f1'])} {pct(c['agreement'])}  "
            f"{'ok' if c['passed'] else 'FAIL'}"
        )
    lines.append(
        "acc/bal/F1: val accuracy, balanced accuracy, macro-F1 in % (K = Keras, T = TFLite); "
        "drop = K - T accuracy in points, its point estimate gated by --max-drop; xf32 = size / float32 .tflite"
    )
    return "\n".join(lines)


def _span(ci: list[float] | None, scale: float, signed: bool = False) -> str:
    if not ci:
        return "[-]"
    fmt = "+.2f" if signed else ".1f"
    return f"[{scale * ci[0]:{fmt}}, {scale * ci[1]:{fmt}}]"


def format_interval_table(rows: Sequence[dict]) -> str:
    """The check's 95% intervals: TFLite accuracy and balanced accuracy, and the drops from Keras.

    Args:
        rows: dicts with ``name``, ``mode`` and ``check`` (with ``ci95`` and ``bootstrap``).

    Returns:
        The table, with a line saying what was resampled.

    Example:
        >>> chk = {"tflite": {"accuracy": 0.8, "balanced_accuracy": 0.6}, "accuracy_drop": 0.5,
        ...        "balanced_accuracy_drop": 1.0, "bootstrap": {"n": 1000, "groups": "image", "n_groups": 40},
        ...        "ci95": {"tflite_accuracy": [0.7, 0.9], "tflite_balanced_accuracy": [0.5, 0.7],
        ...                 "accuracy_drop": [-0.5, 1.5], "balanced_accuracy_drop": [0.0, 2.0]}}
        >>> format_interval_table([{"name": "s", "mode": "int8", "check": chk}]).splitlines()[2].split("  ")[-3:]
        ['60.0 [50.0, 70.0]', '+0.50 [-0.50, +1.50]', '+1.00 [+0.00, +2.00]']
    """
    with_ci = [r for r in rows if r["check"].get("ci95")]
    if not with_ci:
        return ""
    w = max([35, *(len(f"{r['name']}.{r['mode']}") for r in with_ci)])
    head = f"{'95% intervals (val)':<{w}} {'acc T':>17}  {'bal T':>17}  {'acc drop (pts)':>20}  {'bal drop (pts)':>20}"
    lines = [head, "-" * len(head)]
    for r in with_ci:
        c, ci = r["check"], r["check"]["ci95"]
        acc = f"{100 * c['tflite']['accuracy']:.1f} {_span(ci['tflite_accuracy'], 100)}"
        bal = f"{100 * c['tflite']['balanced_accuracy']:.1f} {_span(ci['tflite_balanced_accuracy'], 100)}"
        acc_drop = f"{c['accuracy_drop']:+.2f} {_span(ci['accuracy_drop'], 1, True)}"
        bal_drop = f"{c['balanced_accuracy_drop']:+.2f} {_span(ci['balanced_accuracy_drop'], 1, True)}"
        label = f"{r['name']}.{r['mode']}"
        lines.append(f"{label:<{w}} {acc:>17}  {bal:>17}  {acc_drop:>20}  {bal_drop:>20}")
    b = with_ci[0]["check"]["bootstrap"]
    unit = "lesions" if b["groups"] != "image" else "images"
    lines.append(
        f"bootstrap: {b['n']} resamples of the {b['n_groups']} val {unit}; drops paired (both models on the "
        "same resamples)"
    )
    return "\n".join(lines)


def format_recall_table(rows: Sequence[dict], class_names: Sequence[str]) -> str:
    """Per-class recall drop (points, Keras - TFLite) for each exported file."""
    cols = [str(c)[:7] for c in class_names]
    w = max([35, *(len(f"{r['name']}.{r['mode']}") for r in rows)])
    head = f"{'recall drop (pts)':<{w}} " + " ".join(f"{c:>7}" for c in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        drops = r["check"]["per_class_recall_drop"]
        label = f"{r['name']}.{r['mode']}"
        lines.append(f"{label:<{w}} " + " ".join(f"{drops[c]:+7.1f}" for c in class_names))
    return "\n".join(lines)
