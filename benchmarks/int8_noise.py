"""Where does the int8 student's accuracy drop come from? Flips, ties and the layers behind them.

``kdtool export --quantize int8`` checks the validation accuracy drop against ``--max-drop``
(1.0 point by default), and some default students of 2026-12-01 failed it. This script converts each
given Keras student the way kdtool export does (300 stratified TRAIN images for calibration,
output bias correction) and a few variants, then compares every int8 model's top-1 decision with
the Keras model's on val and test:

- **agreement**: share of images whose argmax is unchanged;
- **top ties**: share of images whose two largest int8 outputs are equal. ``argmax`` (numpy, kdtool
  bench, most app code) then picks the LOWER class index, a fixed preference that is not the
  model's: the drop is shown with that rule and with ties broken at random (seeded);
- **|dz|**: mean absolute logit error, int8 minus Keras.

Variants: 3000 calibration images instead of 300; the first conv block kept in float (a
diagnostic); ``kdtool export --quantize int8-floatends`` (first conv and logits layer float,
the rest int8); int16 activations with int8 weights (TFLite's 16x8 mode, same file size); and
the Keras logits merely rounded to the int8 model's output grid (the floor that any int8
output imposes, with no other error).

Needs the ``[train]`` install (TensorFlow converts). About 40 s per student on 2 cores.

    python benchmarks/int8_noise.py runs/recipes/d96_la_v8e60_efficientnet_lite0/s*/student_*.keras
        [--data ../shared/data/ham10000] [--json benchmarks/int8_noise.json] [--md benchmarks/int8_noise.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from kdtool.data import load_fdata  # noqa: E402
from run import results_doc, stats, write_results  # noqa: E402

TIE_SEED = 0
VARIANTS = ("int8", "int8_calib3000", "int8_block1_float", "int8-floatends", "int16x8", "output_grid")
LABELS = {
    "int8": "int8, as kdtool export writes it (300 calibration images, bias-corrected)",
    "int8_calib3000": "int8, 3000 calibration images",
    "int8_block1_float": "int8, first conv block kept float (diagnostic, not full-integer)",
    "int8-floatends": "kdtool export --quantize int8-floatends (first conv and logits layer float)",
    "int16x8": "16-bit activations, int8 weights (same size)",
    "output_grid": "Keras logits rounded to the int8 output grid (no other error)",
}


def top_ties(scores: np.ndarray) -> np.ndarray:
    """Which rows have their largest value more than once.

    Example:
        >>> top_ties(np.array([[1.0, 1.0, 0.0], [2.0, 1.0, 2.0], [0.0, 1.0, 0.5]])).tolist()
        [True, True, False]
    """
    top = scores.max(axis=1, keepdims=True)
    return (scores == top).sum(axis=1) > 1


def random_tie_argmax(scores: np.ndarray, seed: int = TIE_SEED) -> np.ndarray:
    """argmax with ties broken uniformly at random (seeded); numpy's argmax keeps the lowest index.

    Example:
        >>> random_tie_argmax(np.array([[0.0, 3.0, 1.0]])).tolist()
        [1]
    """
    rng = np.random.default_rng(seed)
    top = scores == scores.max(axis=1, keepdims=True)
    return np.array([rng.choice(np.flatnonzero(row)) for row in top])


def grid_round(logits: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Logits as an int8 output tensor holds them: rounded to ``scale`` steps, clipped to [-128, 127], dequantized.

    Example:
        >>> grid_round(np.array([[0.04, 0.06, 100.0]]), scale=0.1, zero_point=0).tolist()
        [[0.0, 0.1, 12.700000000000001]]
    """
    q = np.clip(np.round(logits / scale) + zero_point, -128, 127)
    return (q - zero_point) * scale


def compare(keras_logits: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict:
    """Decision agreement, top ties, accuracy drops (lowest-index and random tie-breaking) and mean |dz|.

    Drops are in percentage points, Keras minus int8 (positive: int8 is worse).

    Example:
        >>> k = np.array([[0.0, 0.2], [1.0, 0.0]])
        >>> compare(k, np.array([[0.1, 0.1], [1.0, 0.0]]), np.array([1, 0]))["top_ties"]
        0.5
    """
    ref = keras_logits.argmax(axis=1)
    low = logits.argmax(axis=1)
    rnd = random_tie_argmax(logits)
    acc = float(np.mean(ref == labels))
    return {
        "agreement": float(np.mean(low == ref)),
        "top_ties": float(np.mean(top_ties(logits))),
        "accuracy_drop_lowest_index": 100 * (acc - float(np.mean(low == labels))),
        "accuracy_drop_random_ties": 100 * (acc - float(np.mean(rnd == labels))),
        "mean_abs_logit_error": float(np.mean(np.abs(logits - keras_logits))),
    }


# ----------------------------------------------------------------------------- conversions (TensorFlow)

def _int16x8(model, representative) -> tuple[bytes, dict]:
    """TFLite's 16x8 mode (int16 activations, int8 weights): not a kdtool export mode, measured here only."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return conv.convert(), {}


def _first_block(names: list[str]) -> list[str]:
    """The first conv block's fused op among the quantized ops' output tensors (kdtool's students only)."""
    first = next((n for n in names if "block1_" in n and "pool" not in n.lower()), None)
    if first is None:
        raise SystemExit("no tensor of a layer named block1_* found; is this a kdtool student?")
    return [first]


def _block1_float(model, representative) -> bytes:
    """int8 with the first conv block's fused op left in float (kdtool export's selective quantization)."""
    import tensorflow as tf

    from kdtool.export.convert import convert_selective
    from kdtool.export.modes import QUANT_MODES

    def configured():
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        return conv, QUANT_MODES["int8-floatends"](conv, representative=representative)

    return convert_selective(tf, configured, representative, _first_block)[0]


def _output_quantization(data: bytes) -> tuple[float, int]:
    from ai_edge_litert.interpreter import Interpreter

    scale, zero_point = Interpreter(model_content=data).get_output_details()[0]["quantization"]
    return float(scale), int(zero_point)


def analyse(path: Path, fd) -> dict:
    """Every variant of one student, compared with its Keras model on val and test."""
    from kdtool.export.check import run_tflite
    from kdtool.export.convert import convert_model, load_keras_model, representative_dataset
    from kdtool.export.pipeline import _keras_logits, bias_corrected

    model = load_keras_model(path)
    splits = {s: (fd.x(s), fd.labels(s)) for s in ("val", "test")}
    keras = {s: _keras_logits(model, x) for s, (x, _) in splits.items()}
    rep300 = representative_dataset(fd, 300)
    rep3000 = representative_dataset(fd, 3000)
    def corrected(rep, convert) -> bytes:  # as kdtool export writes it: output bias corrected
        return bias_corrected(model, convert(), rep, convert)[0]

    files = {
        "int8": corrected(rep300, lambda: convert_model(model, "int8", rep300, "int8")),
        "int8_calib3000": corrected(rep3000, lambda: convert_model(model, "int8", rep3000, "int8")),
        "int8_block1_float": _block1_float(model, rep300),
        "int8-floatends": corrected(rep300, lambda: convert_model(model, "int8-floatends", rep300)),
        "int16x8": corrected(rep300, lambda: _int16x8(model, rep300)),
    }
    out = {"model": str(path), "output_quantization": dict(zip(("scale", "zero_point"),
                                                                _output_quantization(files["int8"])))}
    out["size_bytes"] = {name: len(data) for name, data in files.items()}
    q = out["output_quantization"]
    for name in VARIANTS:
        out[name] = {}
        for s, (x, y) in splits.items():
            logits = (grid_round(keras[s], q["scale"], q["zero_point"]) if name == "output_grid"
                      else run_tflite(files[name], x))
            out[name][s] = compare(keras[s], logits, y)
    return out


KEYS = (("agreement", "agree %", 100), ("top_ties", "top ties %", 100),
        ("accuracy_drop_lowest_index", "drop, argmax", 1), ("accuracy_drop_random_ties", "drop, random ties", 1),
        ("mean_abs_logit_error", "mean abs dz", 1))


def render(doc: dict) -> str:
    def pm(vals, factor):
        s = stats([factor * v for v in vals])
        return f"{s['mean']:.2f} ± {s['std'] or 0:.2f}"

    lines = ["# int8 noise: where the students' int8 accuracy drop comes from", "",
             f"`{doc['command']}` — {doc['machine_line']}", "",
             f"{len(doc['results'])} student(s); data `{doc['data']}`. Compared with each student's own Keras model; "
             "drops in percentage points (Keras minus int8, positive = int8 worse); mean ± std over the students.", ""]
    for split in ("val", "test"):
        lines += [f"**{split}** ({'what the export check uses' if split == 'val' else 'held out'}):", "",
                  "| variant | " + " | ".join(k[1] for k in KEYS) + " |", "|---|" + "---|" * len(KEYS)]
        for name in VARIANTS:
            cells = [pm([r[name][split][k] for r in doc["results"]], f) for k, _, f in KEYS]
            lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
        lines.append("")
    scales = [r["output_quantization"]["scale"] for r in doc["results"]]
    sizes = {n: stats([r["size_bytes"][n] for r in doc["results"]])["mean"] / 1024 for n in doc["results"][0]["size_bytes"]}
    lines += ["Mean file size: " + ", ".join(f"{n} {kb:.1f} KB" for n, kb in sizes.items()) + ".", ""]
    lines += [f"int8 output step (logits): {min(scales):.3f} to {max(scales):.3f}. Wall time "
              f"{doc['wall_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="student .keras files written by kdtool distill")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ham10000"), help="FData folder.")
    ap.add_argument("--json", default=str(HERE / "int8_noise.json"), help="results JSON")
    ap.add_argument("--md", default=str(HERE / "int8_noise.md"), help="results Markdown")
    args = ap.parse_args(argv)
    missing = [m for m in args.models if not Path(m).is_file()]
    if missing:
        ap.error(f"no such model file: {missing[0]}")
    fd = load_fdata(args.data)
    t0 = time.perf_counter()
    from kdtool.export.convert import quiet

    results = []
    for m in args.models:
        print(f"{m} ...", flush=True)
        with quiet():
            results.append(analyse(Path(m), fd))
    doc = results_doc("int8_noise.py", argv, args.data, results, t0)
    write_results(doc, args.json, args.md, render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
