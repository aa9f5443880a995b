"""A leakage audit: near-duplicate images in two different splits, found by a perceptual hash (numpy only).

Two photographs of one lesion, or one file copied twice, look alike to a model, so an image in test
whose twin is in train is partly a training image. :func:`perceptual_hash` reduces each image to 64
bits that change little under resizing, recompression and small shifts (the DCT hash of Zauner, 2010:
grey 32x32, the 8x8 lowest frequencies, each bit "above the median"); :func:`cross_split_pairs` lists
the pairs of images in different splits whose hashes differ in at most ``max_distance`` bits and whose
grey 32x32 thumbnails correlate at ``min_correlation`` or more (the hash alone matches many look-alike
nevi; the thumbnails confirm a copy, even recompressed, cropped a little or brightened).

It finds copies of one picture, not different photographs of one lesion: on HAM10000 two photographs
of the same lesion are rarely closer than photographs of different lesions, so only a group column
(``kdtool data images --group-column lesion_id``) keeps those apart. With groups the list should be
short; without them it is how a user learns that their split holds the same picture twice.

Example:
    >>> rng = np.random.default_rng(0)
    >>> a = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    >>> b = np.concatenate([a[:1], rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)])  # one copy of a[0]
    >>> pairs = cross_split_pairs({"train": fingerprints(a), "test": fingerprints(b)})
    >>> [(p["split_a"], p["index_a"], p["split_b"], p["index_b"], p["distance"]) for p in pairs]
    [('train', 0, 'test', 0, 0)]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Hash bits at most this far apart make a candidate pair.
DEFAULT_MAX_DISTANCE = 10
#: Candidates whose normalised grey thumbnails correlate at least this much are reported.
DEFAULT_MIN_CORRELATION = 0.97

_HASH_SIDE = 32
_LOW = 8
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def _grey32(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) images as (N, 32, 32) float grey, by area averaging (whole-pixel blocks) or Pillow."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        x = np.clip(np.rint(np.asarray(x, dtype=np.float64) * (255.0 if x.max(initial=0) <= 1.0 else 1.0)), 0, 255)
    grey = x[..., 0] * np.float32(0.299) + x[..., 1] * np.float32(0.587) + x[..., 2] * np.float32(0.114)
    n, h, w = grey.shape
    if (h, w) == (_HASH_SIDE, _HASH_SIDE):
        return grey.astype(np.float64)
    if h % _HASH_SIDE == 0 and w % _HASH_SIDE == 0:
        return grey.reshape(n, _HASH_SIDE, h // _HASH_SIDE, _HASH_SIDE, w // _HASH_SIDE).mean(axis=(2, 4))
    from PIL import Image

    box = getattr(Image, "Resampling", Image).BOX
    out = np.empty((n, _HASH_SIDE, _HASH_SIDE))
    for i in range(n):
        out[i] = np.asarray(Image.fromarray(grey[i].astype(np.float32), mode="F").resize((_HASH_SIDE,) * 2, box))
    return out


def _batch_for(images: np.ndarray, batch: int) -> int:
    """At most ``batch`` images, and at most about 16 M pixels, per step (memory at 256 px)."""
    h, w = images.shape[1:3] if np.ndim(images) == 4 else (1, 1)
    return max(1, min(int(batch), 2**24 // max(1, int(h) * int(w))))


def perceptual_hash(images: np.ndarray, batch: int = 2048) -> np.ndarray:
    """The 64-bit DCT perceptual hash of every image.

    Args:
        images: (N, H, W, 3) uint8, or float in [0, 1].
        batch: images hashed at once (memory).

    Returns:
        (N,) uint64 hashes.

    Example:
        >>> x = np.zeros((1, 64, 64, 3), np.uint8); x[0, :, 32:] = 255
        >>> bool(perceptual_hash(x)[0] == perceptual_hash(x[:, ::2, ::2])[0])     # resizing keeps the hash
        True
    """
    d = _dct_matrix(_HASH_SIDE)
    weights = (np.uint64(1) << np.arange(_LOW * _LOW, dtype=np.uint64)).astype(np.uint64)
    out = np.empty(len(images), dtype=np.uint64)
    batch = _batch_for(images, batch)
    for start in range(0, len(images), batch):
        g = _grey32(images[start : start + batch])
        coef = (d[:_LOW] @ g @ d[:_LOW].T).reshape(len(g), -1)  # only the lowest 8x8 frequencies are needed
        median = np.median(coef[:, 1:], axis=1, keepdims=True)  # the DC term would dominate the median
        bits = (coef > median).astype(np.uint64)
        out[start : start + len(g)] = (bits * weights).sum(axis=1, dtype=np.uint64)
    return out


def fingerprints(images: np.ndarray, batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """What the audit compares: each image's hash and its normalised grey 32x32 thumbnail.

    Args:
        images: (N, H, W, 3) uint8, or float in [0, 1].
        batch: images processed at once (memory).

    Returns:
        ``(hashes, thumbs)``: (N,) uint64 and (N, 1024) float32 with zero mean and unit norm per image.

    Example:
        >>> h, t = fingerprints(np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
        >>> h.shape, t.shape, round(float((t[0] * t[0]).sum()), 3)
        ((2,), (2, 1024), 1.0)
    """
    thumbs = np.empty((len(images), _HASH_SIDE * _HASH_SIDE), dtype=np.float32)
    batch = _batch_for(images, batch)
    for start in range(0, len(images), batch):
        g = _grey32(images[start : start + batch]).reshape(-1, _HASH_SIDE * _HASH_SIDE)
        g = g - g.mean(axis=1, keepdims=True)
        thumbs[start : start + len(g)] = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
    return perceptual_hash(images, batch), thumbs


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distances between every hash of ``a`` (rows) and of ``b`` (columns).

    Args:
        a: (N,) uint64 hashes.
        b: (M,) uint64 hashes.

    Returns:
        (N, M) uint8 distances 0..64.

    Example:
        >>> hamming(np.array([0b1011], np.uint64), np.array([0, 0b1011], np.uint64)).tolist()
        [[3, 0]]
    """
    x = np.bitwise_xor(np.asarray(a, np.uint64)[:, None], np.asarray(b, np.uint64)[None, :])
    return _POPCOUNT8[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1, dtype=np.uint8)


def cross_split_pairs(
    prints: Mapping[str, tuple[np.ndarray, np.ndarray]],
    max_distance: int = DEFAULT_MAX_DISTANCE,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
    chunk: int = 1024,
) -> list[dict]:
    """Pairs of images in different splits that are copies of one picture.

    Args:
        prints: split name -> :func:`fingerprints` of its images.
        max_distance: the largest hash distance (bits) of a candidate pair.
        min_correlation: the least thumbnail correlation that confirms a candidate.
        chunk: rows compared at once (memory).

    Returns:
        One dict per pair (``split_a``, ``index_a``, ``split_b``, ``index_b``, ``distance``,
        ``correlation``), most alike first.
    """
    names = list(prints)
    pairs = []
    for i, sa in enumerate(names):
        for sb in names[i + 1 :]:
            (ha, ta), (hb, tb) = prints[sa], prints[sb]
            for start in range(0, len(ha), chunk):
                dist = hamming(ha[start : start + chunk], hb)
                rows, cols = np.nonzero(dist <= max_distance)
                if rows.size == 0:
                    continue
                corr = np.einsum("ij,ij->i", ta[start + rows], tb[cols])
                for r, c, k in zip(rows, cols, corr, strict=True):
                    if k >= min_correlation:
                        pairs.append(
                            {
                                "split_a": sa,
                                "index_a": int(start + r),
                                "split_b": sb,
                                "index_b": int(c),
                                "distance": int(dist[r, c]),
                                "correlation": round(float(k), 4),
                            }
                        )
    pairs.sort(key=lambda p: (-p["correlation"], p["distance"], p["split_a"], p["index_a"], p["index_b"]))
    return pairs


def audit_summary(
    pairs: list[dict],
    max_distance: int = DEFAULT_MAX_DISTANCE,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
    limit: int = 200,
) -> dict:
    """The record dataset_info.json and ``kdtool data audit --json`` keep of an audit.

    Args:
        pairs: from :func:`cross_split_pairs` (with any names added to each pair).
        max_distance: the hash threshold used.
        min_correlation: the thumbnail threshold used.
        limit: pairs listed in full (the count covers all).

    Returns:
        ``{"method", "max_distance", "min_correlation", "pairs", "by_splits", "listed"}``.

    Example:
        >>> audit_summary([])["pairs"]
        0
    """
    by: dict[str, int] = {}
    for p in pairs:
        key = f"{p['split_a']}-{p['split_b']}"
        by[key] = by.get(key, 0) + 1
    return {
        "method": "64-bit DCT perceptual hash, confirmed by the correlation of grey 32x32 thumbnails",
        "max_distance": int(max_distance),
        "min_correlation": float(min_correlation),
        "pairs": len(pairs),
        "by_splits": by,
        "listed": pairs[:limit],
    }
