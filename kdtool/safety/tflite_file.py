"""Check an untrusted ``.tflite`` file before any interpreter sees it (pure Python + stdlib).

:func:`check_tflite_file`: 8 bytes to :data:`MAX_TFLITE_BYTES`, the ``TFL3``
identifier at bytes 4..8, then a minimal bounds-checked reading of the
flatbuffer (schema version 3, operator codes, subgraphs' operators, buffer
extents) that refuses custom ops (builtin code ``CUSTOM`` = 32, which includes
TensorFlow "Flex" ops) and ``STABLEHLO_CUSTOM_CALL``. Every problem is ONE
:class:`~kdtool.errors.InputError` line naming the file (exit code 2); no
other exception leaves it, whatever the bytes.

Example:
    >>> info = check_tflite_file("models/export/student.int8.tflite")  # doctest: +SKIP
    >>> info.op_names                                                  # doctest: +SKIP
    ('QUANTIZE', 'CONV_2D', 'MAX_POOL_2D', 'MEAN', 'FULLY_CONNECTED', 'DEQUANTIZE')
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from kdtool.errors import InputError

MAX_TFLITE_BYTES = 512 * 1024 * 1024
MIN_TFLITE_BYTES = 8
TFLITE_IDENTIFIER = b"TFL3"
TFLITE_SCHEMA_VERSION = 3
MAX_TFLITE_ITEMS = 1_000_000  # operator codes, operators, buffers: far above any classifier

#: TFLite BuiltinOperator names by code (schema v3, codes 0..209, from LiteRT 2.3's schema).
BUILTIN_OPS = tuple(
    """
ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE
EMBEDDING_LOOKUP FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D
LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 RELU6
RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH CONCAT_EMBEDDINGS SKIP_GRAM CALL CUSTOM
EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND
TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE BIDIRECTIONAL_SEQUENCE_RNN
EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM CAST PRELU MAXIMUM ARG_MAX
MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN TRANSPOSE_CONV
SPARSE_TO_DENSE TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW ARG_MIN FAKE_QUANT
REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV
REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD RANGE RESIZE_NEAREST_NEIGHBOR LEAKY_RELU
SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N GATHER_ND COS WHERE RANK ELU
REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE
NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM BATCH_MATMUL
PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D IMAG REAL COMPLEX_ABS
HASHTABLE HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL CONV_3D_TRANSPOSE VAR_HANDLE
READ_VARIABLE ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL BUCKETIZE RANDOM_UNIFORM
MULTINOMIAL GELU DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX
UNSORTED_SEGMENT_SUM ATAN2 UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR RIGHT_SHIFT
STABLEHLO_LOGISTIC STABLEHLO_ADD STABLEHLO_DIVIDE STABLEHLO_MULTIPLY STABLEHLO_MAXIMUM
STABLEHLO_RESHAPE STABLEHLO_CLAMP STABLEHLO_CONCATENATE STABLEHLO_BROADCAST_IN_DIM
STABLEHLO_CONVOLUTION STABLEHLO_SLICE STABLEHLO_CUSTOM_CALL STABLEHLO_REDUCE STABLEHLO_ABS
STABLEHLO_AND STABLEHLO_COSINE STABLEHLO_EXPONENTIAL STABLEHLO_FLOOR STABLEHLO_LOG STABLEHLO_MINIMUM
STABLEHLO_NEGATE STABLEHLO_OR STABLEHLO_POWER STABLEHLO_REMAINDER STABLEHLO_RSQRT STABLEHLO_SELECT
STABLEHLO_SUBTRACT STABLEHLO_TANH STABLEHLO_SCATTER STABLEHLO_COMPARE STABLEHLO_CONVERT
STABLEHLO_DYNAMIC_SLICE STABLEHLO_DYNAMIC_UPDATE_SLICE STABLEHLO_PAD STABLEHLO_IOTA
STABLEHLO_DOT_GENERAL STABLEHLO_REDUCE_WINDOW STABLEHLO_SORT STABLEHLO_WHILE STABLEHLO_GATHER
STABLEHLO_TRANSPOSE DILATE STABLEHLO_RNG_BIT_GENERATOR REDUCE_WINDOW STABLEHLO_COMPOSITE
STABLEHLO_SHIFT_LEFT STABLEHLO_CBRT STABLEHLO_CASE
""".split()
)
CUSTOM_OP = BUILTIN_OPS.index("CUSTOM")  # 32
#: Builtin codes that stand for foreign code all the same.
REFUSED_BUILTINS = frozenset({CUSTOM_OP, BUILTIN_OPS.index("STABLEHLO_CUSTOM_CALL")})


def _short(text: object, limit: int = 160) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


@dataclass(frozen=True)
class TFLiteInfo:
    """What :func:`check_tflite_file` read from a model file.

    Attributes:
        path: the file.
        size_bytes: its size.
        schema_version: the flatbuffer's ``Model.version`` (3).
        op_names: the distinct builtin operators, in the file's operator-code order.
        subgraphs: number of subgraphs.
        operators: number of operators over all subgraphs.
        description: the model's description string (the converter's name), may be empty.
    """

    path: Path
    size_bytes: int
    schema_version: int
    op_names: tuple[str, ...]
    subgraphs: int
    operators: int
    description: str


class _Corrupt(Exception):
    """Internal: the flatbuffer is malformed (turned into one InputError line)."""


class _FlatBuffer:
    """Bounds-checked reads of a flatbuffer (little-endian tables, vtables, vectors, strings)."""

    def __init__(self, buf) -> None:
        self.buf = buf
        self.n = len(buf)

    def _get(self, fmt: str, off: int, what: str):
        size = struct.calcsize(fmt)
        if off < 0 or off + size > self.n:
            raise _Corrupt(f"{what} at offset {off} lies outside the {self.n}-byte file")
        return struct.unpack_from(fmt, self.buf, off)[0]

    def u32(self, off: int, what: str) -> int:
        return self._get("<I", off, what)

    def table(self, off: int, what: str) -> int:
        """Check a table's vtable and return the table's offset."""
        vt = off - self._get("<i", off, what)
        vt_size = self._get("<H", vt, f"{what} vtable")
        if vt_size < 4 or vt_size % 2 or vt + vt_size > self.n:
            raise _Corrupt(f"{what} has a bad vtable")
        return off

    def field(self, table: int, index: int, what: str) -> int | None:
        """Absolute offset of field ``index`` of a table, or None when absent."""
        vt = table - self._get("<i", table, what)
        vt_size = self._get("<H", vt, f"{what} vtable")
        slot = 4 + 2 * index
        if slot + 2 > vt_size:
            return None
        rel = self._get("<H", vt + slot, f"{what} vtable")
        return table + rel if rel else None

    def scalar(self, table: int, index: int, fmt: str, default: int, what: str) -> int:
        pos = self.field(table, index, what)
        return default if pos is None else self._get(fmt, pos, what)

    def indirect(self, pos: int, what: str) -> int:
        return pos + self.u32(pos, what)

    def vector(
        self, table: int, index: int, elem_size: int, what: str, max_items: int | None = MAX_TFLITE_ITEMS
    ) -> tuple[int, int]:
        """(offset of the first element, length) of a vector field; (0, 0) when absent.

        ``max_items`` bounds tables (operators, buffers); byte vectors (weights) pass None
        and are bounded by the file size alone.
        """
        pos = self.field(table, index, what)
        if pos is None:
            return 0, 0
        vec = self.indirect(pos, what)
        length = self.u32(vec, f"{what} length")
        if (max_items is not None and length > max_items) or vec + 4 + length * elem_size > self.n:
            raise _Corrupt(f"{what} declares {length} entries, beyond the file")
        return vec + 4, length

    def tables(self, table: int, index: int, what: str) -> list[int]:
        start, length = self.vector(table, index, 4, what)
        return [self.table(self.indirect(start + 4 * i, what), f"{what}[{i}]") for i in range(length)]

    def string(self, table: int, index: int, what: str, limit: int = 256) -> str:
        pos = self.field(table, index, what)
        if pos is None:
            return ""
        s = self.indirect(pos, what)
        length = self.u32(s, f"{what} length")
        if s + 4 + length > self.n:
            raise _Corrupt(f"{what} runs past the end of the file")
        return bytes(self.buf[s + 4 : s + 4 + min(length, limit)]).decode("utf-8", "replace")


def _op_name(code: int) -> str:
    return BUILTIN_OPS[code] if 0 <= code < len(BUILTIN_OPS) else f"BUILTIN_{code}"


def _read_tflite(buf) -> tuple[int, tuple[str, ...], int, int, str, list[str]]:
    """(version, op names, subgraphs, operators, description, refused ops) of a TFLite flatbuffer."""
    fb = _FlatBuffer(buf)
    model = fb.table(fb.u32(0, "root offset"), "Model")
    version = fb.scalar(model, 0, "<I", 0, "Model.version")
    if version != TFLITE_SCHEMA_VERSION:
        raise _Corrupt(f"schema version {version}, expected {TFLITE_SCHEMA_VERSION}")
    codes = fb.tables(model, 1, "operator_codes")
    names: list[str] = []
    refused: list[str] = []
    for i, oc in enumerate(codes):
        what = f"operator_codes[{i}]"
        deprecated = fb.scalar(oc, 0, "<b", 0, what)
        builtin = fb.scalar(oc, 3, "<i", 0, what)
        code = max(int(deprecated), int(builtin))  # as TFLite's GetBuiltinCode
        if code < 0:
            raise _Corrupt(f"{what} has a negative builtin code {code}")
        custom = fb.string(oc, 1, what)
        if code == CUSTOM_OP:
            refused.append(repr(custom) if custom else "CUSTOM (unnamed)")
        elif code in REFUSED_BUILTINS:
            refused.append(_op_name(code))
        names.append(_op_name(code))
    subgraphs = fb.tables(model, 2, "subgraphs")
    if not subgraphs:
        raise _Corrupt("the model has no subgraph")
    operators = 0
    for s, sg in enumerate(subgraphs):
        for k, op in enumerate(fb.tables(sg, 3, f"subgraphs[{s}].operators")):
            index = fb.scalar(op, 0, "<I", 0, f"subgraphs[{s}].operators[{k}]")
            if index >= len(codes):
                raise _Corrupt(f"operator {k} of subgraph {s} uses operator code {index} of {len(codes)}")
            operators += 1
            if operators > MAX_TFLITE_ITEMS:
                raise _Corrupt(f"over {MAX_TFLITE_ITEMS} operators")
    description = fb.string(model, 3, "description")
    for b, buffer in enumerate(fb.tables(model, 4, "buffers")):
        fb.vector(buffer, 0, 1, f"buffers[{b}].data", max_items=None)  # bounds-checked inside
        offset = fb.scalar(buffer, 1, "<Q", 0, f"buffers[{b}]")
        size = fb.scalar(buffer, 2, "<Q", 0, f"buffers[{b}]")
        if offset > 1 and offset + size > fb.n:  # data stored after the flatbuffer (models over 2 GB)
            raise _Corrupt(f"buffers[{b}] points at bytes {offset}..{offset + size} beyond the file")
    return version, tuple(dict.fromkeys(names)), len(subgraphs), operators, description, refused


def check_tflite_file(path: str | os.PathLike) -> TFLiteInfo:
    """Check a ``.tflite`` file before any interpreter sees it.

    Args:
        path: the model file.

    Returns:
        A :class:`TFLiteInfo` (op names, subgraph and operator counts).

    Raises:
        InputError: missing, a folder, unreadable, under 8 bytes or over 512 MiB,
            no ``TFL3`` identifier, a malformed or truncated flatbuffer, or a
            custom op. Never any other exception.

    Example:
        >>> check_tflite_file("models/export/student.int8.tflite").operators  # doctest: +SKIP
        64
    """
    path = Path(path)
    try:
        if not path.exists():
            raise InputError(f"{path}: file not found")
        if path.is_dir():
            raise InputError(f"{path}: is a directory, expected a .tflite file")
        size = path.stat().st_size
        if size < MIN_TFLITE_BYTES:
            raise InputError(f"{path}: only {size} bytes, too small to be a TFLite model (truncated?)")
        if size > MAX_TFLITE_BYTES:
            raise InputError(
                f"{path}: {size / 2**20:.0f} MiB is over the {MAX_TFLITE_BYTES // 2**20} MiB limit for a TFLite model"
            )
        with open(path, "rb") as fh:
            head = fh.read(8)
            if head[4:8] != TFLITE_IDENTIFIER:
                raise InputError(f"{path}: not a TFLite model (no 'TFL3' identifier at bytes 4..8)")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                version, ops, n_sub, n_ops, desc, refused = _read_tflite(buf)
    except InputError:
        raise
    except _Corrupt as exc:
        raise InputError(f"{path}: corrupt or truncated TFLite file, cannot load it ({_short(exc)})") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read ({_short(exc)})") from None
    if refused:
        raise InputError(
            f"{path}: uses custom op(s) {', '.join(sorted(set(refused)))[:200]}; only builtin TFLite ops are accepted "
            "(convert without allow_custom_ops or SELECT_TF_OPS)"
        )
    return TFLiteInfo(path, size, version, ops, n_sub, n_ops, desc)
