"""Run a .tflite with kdtool bench's interpreter wrapper and compare it with its Keras model (numpy only).

The check runs on the VALIDATION split: accuracy, balanced accuracy and macro-F1
of both models, the drops (in percentage points, Keras minus TFLite), per-class
recall drops and top-1 agreement. The .tflite runs through the same
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


def compare(
    keras_logits: np.ndarray,
    tflite_logits: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    max_drop: float = 1.0,
    split: str = "val",
) -> dict:
    """Compare a Keras model and its .tflite on the same images.

    Args:
        keras_logits: (N, K) Keras outputs.
        tflite_logits: (N, K) dequantized .tflite outputs.
        labels: (N,) integer labels.
        class_names: K names.
        max_drop: the accuracy drop (percentage points) above which ``passed`` is False.
        split: the split's name, recorded.

    Returns:
        A JSON-ready dict: ``split``, ``n``, ``keras`` and ``tflite`` (accuracy,
        balanced_accuracy, macro_f1 as fractions, per_class_recall, melanoma_sensitivity),
        ``accuracy_drop``, ``balanced_accuracy_drop``, ``macro_f1_drop`` and
        ``per_class_recall_drop`` in percentage points (Keras minus TFLite; positive = worse),
        ``agreement`` (top-1, fraction), ``max_abs_logit_diff``, ``max_drop``, ``passed``.
    """
    keras_logits, tflite_logits = np.asarray(keras_logits), np.asarray(tflite_logits)
    kp, tp = keras_logits.argmax(axis=1), tflite_logits.argmax(axis=1)
    k = _headline(classification_report(labels, kp, class_names))
    t = _headline(classification_report(labels, tp, class_names))
    acc_drop = _pts(k["accuracy"], t["accuracy"])
    return {
        "split": split,
        "n": int(len(labels)),
        "units": "metrics are fractions in [0, 1]; *_drop are percentage points, Keras minus TFLite",
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
        "drop = K - T accuracy in points; xf32 = size / float32 .tflite"
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
