"""Checks on untrusted model files before Keras or a TFLite interpreter sees them (pure Python + stdlib).

Nothing here imports TensorFlow, Keras or flatbuffers, so it runs on the device
(``kdtool bench``/``predict``) as well as in ``kdtool export``. Every problem is
ONE :class:`~kdtool.errors.InputError` line naming the file (exit code 2); no
other exception leaves these functions, whatever the bytes.

Modules:
    tflite_file: :func:`check_tflite_file`, a bounds-checked reading of the flatbuffer that refuses custom ops.
    keras_file: :func:`check_keras_file`, a pre-scan of the ``.keras`` zip and its config before
        ``keras.saving.load_model(..., safe_mode=True)``.

Example:
    >>> check_tflite_file("models/export/student.int8.tflite").op_names  # doctest: +SKIP
    ('QUANTIZE', 'CONV_2D', 'MAX_POOL_2D', 'MEAN', 'FULLY_CONNECTED', 'DEQUANTIZE')
    >>> check_keras_file("models/student_alone.keras")["classes"][:2]   # doctest: +SKIP
    ['keras.layers.BatchNormalization', 'keras.layers.Conv2D']
"""

from __future__ import annotations

from kdtool.safety.keras_file import (
    KERAS_MEMBERS,
    MAX_COMPRESSION_RATIO,
    MAX_KERAS_FILE_BYTES,
    MAX_KERAS_MEMBERS,
    MAX_KERAS_UNCOMPRESSED,
    REFUSED_CLASSES,
    check_keras_file,
)
from kdtool.safety.tflite_file import (
    BUILTIN_OPS,
    MAX_TFLITE_BYTES,
    MIN_TFLITE_BYTES,
    TFLITE_IDENTIFIER,
    TFLiteInfo,
    check_tflite_file,
)

__all__ = [
    "BUILTIN_OPS", "KERAS_MEMBERS", "MAX_COMPRESSION_RATIO", "MAX_KERAS_FILE_BYTES", "MAX_KERAS_MEMBERS",
    "MAX_KERAS_UNCOMPRESSED", "MAX_TFLITE_BYTES", "MIN_TFLITE_BYTES", "REFUSED_CLASSES", "TFLITE_IDENTIFIER",
    "TFLiteInfo", "check_keras_file", "check_tflite_file",
]  # fmt: skip
