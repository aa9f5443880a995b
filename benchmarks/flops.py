"""Analytic multiply-accumulate (MAC) counts of Keras models, and a measured CPU matmul peak.

Only the layers that dominate a CNN's compute are counted, per image:

- ``Conv2D``: H_out * W_out * C_out * kh * kw * C_in / groups
- ``DepthwiseConv2D``: H_out * W_out * C_out * kh * kw  (C_out = C_in * depth_multiplier)
- ``Dense``: prod(leading output dims) * C_in * units

Batch normalisation, activations, pooling, resizing and additions are element-wise
(a few operations per activation) and are left out; FLOPs are taken as 2 x MACs.
Nested models (a teacher's backbone) are walked recursively; the shapes are each
layer's own symbolic output, so a backbone that runs at 96 px is counted at 96 px.

Example:
    >>> macs = count_macs(build_student((32, 32, 3), 7))   # doctest: +SKIP
    >>> macs["total"]                                       # doctest: +SKIP
    10356992
"""

from __future__ import annotations

import time

import numpy as np


def _shape(tensor) -> list[int]:
    return [int(d) if d is not None else 1 for d in tensor.shape]


def _layer_macs(layer) -> tuple[str, int] | None:
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        out = _shape(layer.output)
        kh, kw = layer.kernel_size
        return "depthwise_conv", out[1] * out[2] * out[3] * kh * kw
    if isinstance(layer, keras.layers.Conv2D):  # after DepthwiseConv2D (not a subclass in Keras 3, but be safe)
        out = _shape(layer.output)
        cin = _shape(layer.input)[-1]
        kh, kw = layer.kernel_size
        groups = int(getattr(layer, "groups", 1) or 1)
        return "conv", out[1] * out[2] * out[3] * kh * kw * cin // groups
    if isinstance(layer, keras.layers.Dense):
        out = _shape(layer.output)
        cin = _shape(layer.input)[-1]
        lead = int(np.prod(out[1:-1])) if len(out) > 2 else 1
        return "dense", lead * cin * out[-1]
    return None


def count_macs(model) -> dict:
    """MACs per image of a built Keras model, by layer kind, plus ``total`` and ``flops`` (2 x total)."""
    import keras

    by_kind: dict[str, int] = {}

    def walk(m) -> None:
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                walk(layer)
                continue
            got = _layer_macs(layer)
            if got:
                by_kind[got[0]] = by_kind.get(got[0], 0) + int(got[1])

    walk(model)
    total = sum(by_kind.values())
    return {"by_kind": by_kind, "total": int(total), "flops": int(2 * total)}


def matmul_peak_gflops(threads: int = 1, n: int = 1024, repeats: int = 7, seconds: float = 1.5) -> dict:
    """Best float32 GEMM rate numpy's BLAS reaches here with ``threads`` threads (GFLOP/s).

    A square (n x n) @ (n x n) float32 product is timed repeatedly (2 n^3 FLOPs each)
    for about ``seconds``; the best of ``repeats`` rounds is taken as the peak.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        threadpool_limits = None
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    best = 0.0
    ctx = threadpool_limits(limits=threads, user_api="blas") if threadpool_limits else None
    try:
        if ctx is not None:
            ctx.__enter__()
        a @ b  # warm-up
        per_round = max(1, int(seconds / repeats / 0.02))
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(per_round):
                a @ b
            dt = (time.perf_counter() - t0) / per_round
            best = max(best, 2.0 * n**3 / dt / 1e9)
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
    return {
        "threads": threads,
        "n": n,
        "gflops": round(best, 2),
        "dtype": "float32",
        "blas_limited": threadpool_limits is not None,
    }


def tflite_gemm_peak(
    mode: str = "float32", threads: int = 1, m: int = 256, k: int = 1024, n: int = 1024, seconds: float = 1.0
) -> dict:
    """Best rate of LiteRT's own GEMM (XNNPACK FULLY_CONNECTED, (m x k) @ (k x n)) in ``mode`` (float32 or int8).

    The same engine and kernels family as the student's .tflite, so the student's FLOPs over
    this rate is a compute floor that XNNPACK can actually reach here. int8 counts one
    multiply-accumulate as 2 operations, like float32.
    """
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from kdtool.export.convert import convert_model

    keras.utils.set_random_seed(0)
    inp = keras.Input(shape=(k,))
    model = keras.Model(inp, keras.layers.Dense(n, use_bias=False)(inp))
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(8):
            yield [rng.standard_normal((1, k)).astype(np.float32)]

    data, _ = convert_model(model, mode, representative if mode == "int8" else None)
    interp = Interpreter(model_content=data, num_threads=int(threads))
    det = interp.get_input_details()[0]
    interp.resize_tensor_input(det["index"], [m, k])
    interp.allocate_tensors()
    det = interp.get_input_details()[0]
    x = (
        rng.integers(-100, 100, size=(m, k)).astype(det["dtype"])
        if det["dtype"] != np.float32
        else rng.standard_normal((m, k)).astype(np.float32)
    )
    interp.set_tensor(det["index"], x)
    for _ in range(3):
        interp.invoke()
    t0 = time.perf_counter()
    interp.invoke()
    one = max(time.perf_counter() - t0, 1e-6)
    reps = max(5, int(seconds / one))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - t0)
    best = 2.0 * m * k * n / float(np.percentile(times, 10)) / 1e9
    return {
        "mode": mode,
        "threads": threads,
        "shape": [m, k, n],
        "gops": round(best, 1),
        "engine": "ai_edge_litert FULLY_CONNECTED (XNNPACK)",
        "statistic": "10th percentile of invokes",
    }
