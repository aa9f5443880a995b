"""On-device evaluation of exported .tflite models: ``kdtool bench`` and ``kdtool predict``.

Light install only (numpy, click, cloup, Pillow and a TFLite runtime): nothing in
this package imports TensorFlow, Keras or scikit-learn, except the last-resort
interpreter fallback in :mod:`kdtool.litert` when no LiteRT or tflite_runtime
is installed. The interpreter wrapper (:mod:`kdtool.litert`,
:mod:`kdtool.tflite_model`) and the quantize/dequantize arithmetic
(:mod:`kdtool.quant`) are core modules, shared with ``kdtool export``'s check.

Modules:
    evaluate: probabilities over a split (softmax, --tta averaging).
    isolation: a foreign model's interpreter in a child process (--isolate).
    tta: test-time augmentation views (--tta).
    latency: benchmark_model-style timing and memory.
    device: machine facts and emulation detection.
    run: one model -> one result record.
    uncertainty: 95% intervals (kdtool.intervals) and threshold-free metrics of a record, and their table.
    curves: calibration (ECE with an interval, reliability bins), ROC curves, --plots.
    subgroups: --by COLUMN, every metric per value of an image_ids.csv column, and the worst group.
    tables: table cells and fixed-width tables.
    report: the main table, JSON (keys documented there), CSV.
    compare: --compare, each device's frontiers and the pick per latency budget.
    pareto_plot: pareto.png, the frontiers drawn.
    predict: image files -> top-k classes.
    cli: the click commands.
"""
