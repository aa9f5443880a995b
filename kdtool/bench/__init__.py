"""On-device evaluation of exported .tflite models: ``kdtool bench`` and ``kdtool predict``.

Light install only (numpy, click, Pillow and a TFLite runtime): nothing in
this package imports TensorFlow, Keras or scikit-learn, except the last-resort
interpreter fallback in :mod:`kdtool.bench.runtime` when no LiteRT or
tflite_runtime is installed.

Modules:
    runtime: interpreter selection, model-file checks, loading.
    evaluate: quantized I/O and predictions over a split.
    tta: test-time augmentation views (--tta).
    latency: benchmark_model-style timing and memory.
    device: machine facts and emulation detection.
    run: one model -> one result record.
    report: table, JSON (keys documented there), CSV, --compare, pareto.png.
    predict: image files -> top-k classes.
    cli: the click commands.
"""
