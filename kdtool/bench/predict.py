"""Classify image files with a .tflite model (Pillow + numpy + a TFLite runtime only).

Each image is opened with Pillow, EXIF-rotated, converted to RGB, resized
whole (no crop) to the model's input H x W with bicubic resampling, and
scaled to float32 by ``/255`` - the same steps that made the training data.
Integer models get the input quantized from their own parameters (see
:mod:`kdtool.quant`). Class names come from the export sidecar
(``X.int8.json`` beside ``X.int8.tflite``), else ``class_0..K-1``.

Example:
    >>> model = load_model("s.int8.tflite", select_runtime())  # doctest: +SKIP
    >>> classify(model, ["lesion.jpg"], top=3)[0]["top"][0]    # doctest: +SKIP
    {'class': 'nv', 'probability': 0.91}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdtool.bench.evaluate import predict_proba
from kdtool.data import to_unit_float
from kdtool.images import read_rgb
from kdtool.tflite_model import LoadedModel


def load_image(path: str | Path, height: int, width: int) -> np.ndarray:
    """Read an image file as the model's input: float32 (H, W, 3) in [0, 1].

    The steps are :func:`kdtool.images.read_rgb`'s, the ones ``kdtool data images`` made the training
    arrays with (EXIF orientation, 8-bit RGB, the whole image resized bicubically), then ``/255``.

    Args:
        path: a JPEG/PNG (anything Pillow reads).
        height: model input height.
        width: model input width.

    Returns:
        The resized RGB image scaled by /255.

    Raises:
        InputError: missing, too big, not an image, truncated, or a decompression bomb.
    """
    return to_unit_float(read_rgb(path, int(height), int(width)))


def classify(model: LoadedModel, images: Sequence[str | Path], top: int = 3, tta: str = "none") -> list[dict]:
    """Top-``top`` classes of each image.

    Args:
        model: a loaded model (input (N, H, W, 3)).
        images: image files.
        top: how many classes to list (at most K).
        tta: test-time augmentation mode (:data:`kdtool.bench.tta.TTA_MODES`): scores averaged over its views.

    Returns:
        One dict per image: ``{"image", "model", "top": [{"class", "probability"}],
        "probabilities": {class: probability}}``.
    """
    h, w, _ = model.image_shape
    x = np.stack([load_image(p, h, w) for p in images])  # every image checked before any inference
    probs = predict_proba(model, x, tta=tta)
    names = model.class_names()
    k = min(int(top), len(names))
    results = []
    for path, p in zip(images, probs, strict=True):
        order = np.argsort(-p, kind="stable")[:k]
        results.append({
            "image": str(path),
            "model": model.path.name,
            "top": [{"class": names[i], "probability": float(p[i])} for i in order],
            "probabilities": {n: float(v) for n, v in zip(names, p, strict=True)},
        })  # fmt: skip
    return results


def format_predictions(results: Sequence[dict]) -> str:
    """``lesion.png: mel 0.812, nv 0.103, bkl 0.051`` per image."""
    return "\n".join(
        f"{r['image']}: " + ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"]) for r in results
    )
