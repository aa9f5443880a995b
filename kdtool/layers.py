"""kdtool's own serializable Keras layers (teachers only; the student uses built-ins).

Importing this module registers them under the ``kdtool`` package name, so a
saved teacher reloads with ``keras.saving.load_model(path, safe_mode=True)``
without a ``Lambda`` (which safe mode rightly refuses).
"""

from __future__ import annotations

import keras
from keras import ops

# mode -> (scale applied to [0,1] input, per-channel mean, per-channel std, flip RGB->BGR)
# These reproduce keras.applications' preprocess_input for each family on 0..255 input.
_MODES = {
    # VGG, ResNet50: "caffe": BGR, mean subtraction on 0..255, no scaling.
    "caffe": (255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0), True),
    # DenseNet: "torch": /255 then ImageNet mean/std.
    "torch": (1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False),
    # Xception, NASNet: "tf": scale to [-1, 1].
    "tf": (255.0, (127.5, 127.5, 127.5), (127.5, 127.5, 127.5), False),
    # EfficientNet (keras.applications): takes 0..255 and normalizes inside the model.
    "raw255": (255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), False),
    # EfficientNet-Lite (TF reference): (x*255 - 127) / 128.
    "lite": (255.0, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0), False),
}


@keras.saving.register_keras_serializable(package="kdtool")
class ImagePreprocess(keras.layers.Layer):
    """Turn [0, 1] RGB images into what an ImageNet backbone expects.

    Args:
        mode: one of ``caffe``, ``torch``, ``tf``, ``raw255``, ``lite`` (see ``_MODES``).

    Example:
        >>> layer = ImagePreprocess("tf")
        >>> float(layer(np.ones((1, 1, 1, 3), "float32"))[0, 0, 0, 0])  # doctest: +SKIP
        1.0
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(f"unknown preprocess mode {mode!r}; choose one of {', '.join(_MODES)}")
        self.mode = mode

    def call(self, x):
        scale, mean, std, flip = _MODES[self.mode]
        x = ops.cast(x, "float32") * scale
        if flip:
            x = ops.flip(x, axis=-1)
        mean_t = ops.convert_to_tensor(mean, dtype="float32")
        std_t = ops.convert_to_tensor(std, dtype="float32")
        return (x - mean_t) / std_t

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
