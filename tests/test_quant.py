"""kdtool.quant: the one quantize/dequantize of kdtool export's check and kdtool bench (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from kdtool import quant

SCALE = float(np.float32(1 / 255))  # what a model calibrated on [0, 1] images stores (a float32)


def float64_quantize(x, scale, zero_point, lo, hi):
    """The export check's former arithmetic: float64 division."""
    return np.clip(np.round(np.asarray(x, np.float64) / scale) + zero_point, lo, hi)


def borderline_values(scale: float, steps: range) -> np.ndarray:
    """float32 pixels next to a half step, where float32 and float64 division round differently."""
    found = []
    for n in steps:
        centre = np.float32((n + 0.5) * scale)
        for x in (np.nextafter(centre, np.float32(-1)), centre, np.nextafter(centre, np.float32(2))):
            if np.rint(x / np.float32(scale)) != np.rint(np.float64(x) / scale):
                found.append(x)
    return np.array(found, dtype=np.float32)


def test_borderline_pixel_quantizes_in_float32_with_ties_to_even():
    x = np.float32(0.025490198)  # 6.5 steps of 1/255 in float32 arithmetic; 6.5000002 in float64
    assert np.float32(x) / np.float32(SCALE) == np.float32(6.5)
    assert float64_quantize(x, SCALE, 0, 0, 255) == 7  # the float64 answer this module does not give
    assert quant.quantize(np.array([x]), "uint8", SCALE, 0).tolist() == [6]  # float32, tie to even
    assert quant.quantize(np.array([x]), "int8", SCALE, -128).tolist() == [6 - 128]


def test_float32_and_float64_differ_on_many_borderline_pixels():
    x = borderline_values(SCALE, range(255))
    assert len(x) > 50  # the disagreement is common next to half steps, not a curiosity
    q32 = quant.quantize(x, "uint8", SCALE, 0)
    assert np.array_equal(q32, np.rint(x / np.float32(SCALE)).astype(np.uint8))
    assert not np.array_equal(q32, float64_quantize(x, SCALE, 0, 0, 255).astype(np.uint8))


def test_quantize_clips_and_casts():
    x = np.array([-1.0, 0.0, 0.5, 2.0], np.float32)
    assert quant.quantize(x, "int8", 1 / 255, -128).tolist() == [-128, -128, -1, 127]
    assert quant.quantize(x, np.uint8, 0.5, 10).tolist() == [8, 10, 11, 14]
    assert quant.quantize(x, "int16", 1 / 1000, 0).tolist() == [-1000, 0, 500, 2000]
    assert quant.quantize(x, "float16", 0.0, 0).dtype == np.float16
    with pytest.raises(ValueError, match="without a quantization scale"):
        quant.quantize(x, "int8", 0.0, 0)


def test_dequantize_float32_and_pass_through():
    q = np.array([-128, 0, 127], np.int8)
    out = quant.dequantize(q, 0.25, -128)
    assert out.dtype == np.float32 and out.tolist() == [0.0, 32.0, 63.75]
    assert quant.dequantize(np.array([1.5, -2.0]), 0.0, 0).tolist() == [1.5, -2.0]
    assert quant.dequantize(np.array([3, 4], np.int8), 0.0, 0).tolist() == [3.0, 4.0]  # no scale: no mapping
    assert quant.is_quantized("uint8", 0.1) and not quant.is_quantized("float32", 0.1)
