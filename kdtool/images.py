"""Read one image file as a model sees it: 8-bit RGB, resized whole, the same way everywhere (no TensorFlow).

``kdtool data images`` builds training arrays with :func:`read_rgb` and ``kdtool predict`` classifies
files with it, so an image on the device goes through exactly the steps its training data went through:

1. Pillow opens the file (anything it reads: JPEG, PNG, BMP, GIF, TIFF, WebP); a file over
   :data:`MAX_IMAGE_BYTES` or with more pixels than Pillow's decompression-bomb limit is refused;
2. the EXIF orientation is applied (a phone photo stored sideways comes out upright);
3. the pixels become 8-bit RGB: grayscale is repeated over three channels, a palette is looked up,
   CMYK is converted, an alpha channel is dropped (as ``keras.utils.image_dataset_from_directory`` does),
   and 16-bit or 32-bit integer images are scaled from their full range to 0..255;
4. the whole image (no crop) is resized to the requested height and width with bicubic resampling.

Every failure is an :class:`~kdtool.errors.InputError` whose message names the file and the reason.

Example:
    >>> import tempfile
    >>> from PIL import Image
    >>> path = Path(tempfile.mkdtemp()) / "grey16.png"
    >>> Image.fromarray(np.full((30, 40), 65535, dtype=np.uint16)).save(path)
    >>> x = read_rgb(path, 8, 8)
    >>> x.shape, x.dtype.name, int(x.max())
    ((8, 8, 3), 'uint8', 255)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from kdtool.errors import InputError, RuntimeFailure

#: Files larger than this are refused before they are decoded.
MAX_IMAGE_BYTES = 64 * 2**20

#: File name endings read as images when a folder is listed.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError as exc:  # pragma: no cover - Pillow is an install requirement
        raise RuntimeFailure(f"reading images needs Pillow: run  pip install Pillow  ({exc})") from None
    return Image, ImageOps


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _to_rgb8(img):
    """An opened (oriented) Pillow image as an 8-bit RGB Pillow image."""
    Image, _ = _pil()
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            full = 65535.0
        elif mode == "I":
            full = 65535.0 if a.max(initial=0) <= 65535 else float(a.max())
        else:  # float images: assume 0..1 when they fit, else their own range
            full = 1.0 if a.max(initial=0) <= 1.0 else float(a.max())
        gray = np.clip(np.rint(a * (255.0 / full)), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[..., None], 3, axis=-1))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    return img.convert("RGB")


def read_rgb(path: str | Path, height: int, width: int | None = None) -> np.ndarray:
    """Read an image file as uint8 RGB, resized whole to ``height`` x ``width`` (bicubic).

    Args:
        path: the image file.
        height: output height in pixels.
        width: output width (default: ``height``).

    Returns:
        (height, width, 3) uint8 array.

    Raises:
        InputError: missing, empty, too big, not an image, truncated, or a decompression bomb (one line
            naming the file).

    Example:
        >>> read_rgb("missing.jpg", 32)
        Traceback (most recent call last):
        ...
        kdtool.errors.InputError: missing.jpg: file not found
    """
    Image, ImageOps = _pil()
    path = Path(path)
    width = height if width is None else width
    if not path.is_file():
        raise InputError(f"{path}: {'is a directory, expected an image' if path.is_dir() else 'file not found'}")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    if size > MAX_IMAGE_BYTES:
        raise InputError(f"{path}: over {MAX_IMAGE_BYTES // 2**20} MiB; not accepted as an image")
    bicubic = getattr(Image, "Resampling", Image).BICUBIC
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img) or img
                rgb = _to_rgb8(img)
        if rgb.size != (int(width), int(height)):
            rgb = rgb.resize((int(width), int(height)), bicubic)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InputError(
            f"{path}: too many pixels, refused as a possible decompression bomb ({_short(exc, 120)})"
        ) from None
    except Image.UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read (JPEG, PNG, ...)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InputError(f"{path}: cannot read image ({_short(exc)})") from None
    except Exception as exc:  # malformed TIFF/EXIF data raise struct.error, KeyError, ZeroDivisionError, ...
        raise InputError(f"{path}: cannot decode image ({type(exc).__name__}: {_short(exc)})") from None
    return np.asarray(rgb, dtype=np.uint8)
