"""Turn a folder of images and their labels into a group-disjoint FData folder, at any resolution.

:func:`build_fdata` reads every image the :mod:`kdtool.image_sources` listing names with
:func:`kdtool.images.read_rgb` (the steps ``kdtool predict`` applies on the device), skips the files that
cannot be read (each with its reason), splits by group (:func:`kdtool.splits.group_split`), audits the
split for copies of one picture in two splits (:mod:`kdtool.audit`) and writes, atomically, an FData
folder with ``classes.json``, ``image_ids.csv`` (split, position, file, group, label and the table's other
columns) and ``dataset_info.json`` (source, processing, counts, skipped files, audit, a hash of the
inputs). The folder is built beside ``out`` under a temporary name and renamed at the end, so a failure
leaves nothing half-written and an existing folder is never touched.

Example:
    >>> listing = from_table("images/", "metadata.csv", "image_id", "dx", "lesion_id")  # doctest: +SKIP
    >>> info = build_fdata(listing, "FData64", size=64)                                  # doctest: +SKIP
    >>> info["counts"]["test"]["mel"], info["audit"]["pairs"]                            # doctest: +SKIP
    (190, 0)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kdtool.audit import audit_summary, cross_split_pairs, fingerprints
from kdtool.data import SPLITS, atomic_save_npy, atomic_write_text
from kdtool.errors import InputError, RuntimeFailure
from kdtool.image_sources import Listing
from kdtool.images import read_rgb
from kdtool.splits import group_split

#: Image sides ``kdtool data images --size`` accepts.
MIN_SIZE, MAX_SIZE = 32, 256


def _read_one(item, size: int) -> tuple[np.ndarray | None, str | None, str]:
    """(image or None, reason skipped or None, sha256 of the file's bytes or '')."""
    try:
        digest = hashlib.sha256(item.path.read_bytes()).hexdigest()
    except OSError as exc:
        return None, f"cannot read file ({exc.strerror or exc})", ""
    try:
        return read_rgb(item.path, size), None, digest
    except InputError as exc:
        reason = str(exc)
        prefix = f"{item.path}: "
        return None, reason[len(prefix) :] if reason.startswith(prefix) else reason, digest


def read_images(
    listing: Listing, size: int, workers: int | None = None, progress: Callable | None = None
) -> tuple[np.ndarray, list[int], list[dict], str]:
    """Read every listed image at ``size`` x ``size``, in parallel threads, keeping the listing's order.

    Args:
        listing: what to read.
        size: output side in pixels.
        workers: reader threads (default: the CPU count).
        progress: called with the number of images just finished (a progress bar's ``update``).

    Returns:
        ``(images, kept, skipped, inputs_sha256)``: (M, size, size, 3) uint8 images of the readable files,
        their indices in ``listing.items``, one ``{"file", "reason"}`` per skipped file, and a SHA-256 over
        every listed file's path and bytes.
    """
    items = listing.items
    out = np.empty((len(items), size, size, 3), dtype=np.uint8)
    kept, skipped, hasher = [], [], hashlib.sha256()
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for i, (img, reason, digest) in enumerate(pool.map(lambda it: _read_one(it, size), items, chunksize=16)):
            hasher.update(f"{items[i].rel}\0{digest}\n".encode())
            if img is None:
                skipped.append({"file": items[i].rel, "reason": reason})
            else:
                out[len(kept)] = img
                kept.append(i)
            if progress is not None:
                progress(1)
    return out[: len(kept)], kept, skipped, hasher.hexdigest()


def class_order(labels: Sequence[str], classes: Sequence[str] | None, where: str) -> list[str]:
    """The class names in output order: ``classes`` when given (every label must be one), else sorted.

    Args:
        labels: every image's label.
        classes: the order the user asked for (a model's classes, to bench on an external collection).
        where: the source, for the error message.

    Returns:
        The class names.

    Raises:
        InputError: a label that is not in ``classes``, or a repeated class.

    Example:
        >>> class_order(["nv", "mel", "nv"], None, "t.csv")
        ['mel', 'nv']
    """
    if not classes:
        return sorted(set(labels))
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise InputError(f"--classes: a class is named twice ({', '.join(classes)})")
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise InputError(f"{where}: label(s) {', '.join(unknown)} not in --classes ({', '.join(classes)})")
    return classes


def _image_ids_csv(listing: Listing, kept: list[int], split_of: np.ndarray, position: np.ndarray) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["split", "position", "file", "group", "label", *listing.extra_columns])
    order = sorted(range(len(kept)), key=lambda j: (SPLITS.index(SPLITS[split_of[j]]), position[j]))
    for j in order:
        it = listing.items[kept[j]]
        group = it.group if it.group is not None else it.rel
        writer.writerow([SPLITS[split_of[j]], int(position[j]), it.rel, group, it.label, *it.extra.values()])
    return buf.getvalue()


def build_fdata(
    listing: Listing,
    out: str | os.PathLike,
    size: int = 32,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    test_only: bool = False,
    strict: bool = False,
    classes: Sequence[str] | None = None,
    workers: int | None = None,
    progress: Callable | None = None,
    warn: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> dict:
    """Read, split, audit and write a listing as an FData folder (see the module docstring).

    Args:
        listing: from :func:`kdtool.image_sources.from_table` or ``from_class_folders``.
        out: the FData folder to create (must not exist).
        size: image side, MIN_SIZE..MAX_SIZE.
        fractions: train, val, test shares summing to 1.
        seed: the split's seed.
        test_only: every image goes to the test split (to bench a model on an external collection).
        strict: an unreadable image stops the command (exit 2) instead of being skipped.
        classes: class order (default: sorted label names).
        workers: reader threads.
        progress: progress callback (see :func:`read_images`).
        warn: where warnings go (one line each).

    Returns:
        The dataset_info.json record.

    Raises:
        InputError: ``out`` exists, a bad size, a label outside ``classes``, an unreadable image with
            ``strict``, no readable image, or a class with too few groups to split.
    """
    out = Path(out)
    if out.exists():
        raise InputError(f"{out}: already exists; kdtool never overwrites a data folder (choose another --out)")
    if out.parent.exists() and not out.parent.is_dir():
        raise InputError(f"--out {out}: {out.parent} is a file, not a folder")
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise InputError(f"--size: {size} is outside {MIN_SIZE}..{MAX_SIZE}")
    where = listing.source.get("table") or listing.source.get("folder")
    names = class_order([it.label for it in listing.items], classes, where)
    images, kept, skipped, inputs_sha = read_images(listing, int(size), workers, progress)
    if skipped and strict:
        first = skipped[0]
        raise InputError(
            f"{Path(listing.source['folder']) / first['file']}: {first['reason']} "
            f"({len(skipped)} unreadable image(s); --strict stops at any)"
        )
    if not kept:
        raise InputError(f"{where}: none of the {len(listing.items)} listed images could be read")
    labels = np.array([names.index(listing.items[i].label) for i in kept], dtype=np.int64)
    groups = np.array([listing.items[i].group or listing.items[i].rel for i in kept], dtype=str)
    if test_only:
        split_of = np.full(len(kept), SPLITS.index("test"))
    else:
        if not listing.grouped:
            warn(
                f"warning: {where}: no group column, so images of one lesion or patient may sit in two splits "
                "(pass --labels TABLE --group-column COLUMN to keep them together)"
            )
        split_of = group_split(labels, groups, fractions, seed, names)
    position = np.zeros(len(kept), dtype=np.int64)
    arrays, counts, n_groups, prints = {}, {}, {}, {}
    for s, split in enumerate(SPLITS):
        idx = np.flatnonzero(split_of == s)
        if idx.size == 0:
            continue
        position[idx] = np.arange(idx.size)
        arrays[split] = (images[idx], np.eye(len(names), dtype=np.float32)[labels[idx]])
        counts[split] = {n: int(np.sum(labels[idx] == c)) for c, n in enumerate(names)}
        n_groups[split] = int(np.unique(groups[idx]).size)
        prints[split] = fingerprints(images[idx])
    pairs = cross_split_pairs(prints) if len(prints) > 1 else []
    for p in pairs:  # name the files, not only the positions
        for side in ("a", "b"):
            j = np.flatnonzero((split_of == SPLITS.index(p[f"split_{side}"])) & (position == p[f"index_{side}"]))[0]
            p[f"file_{side}"] = listing.items[kept[j]].rel
    info = {
        "source": listing.source,
        "classes": names,
        "image_size": [int(size), int(size)],
        "processing": "Pillow: EXIF orientation applied, converted to 8-bit RGB (alpha dropped, 16-bit scaled), "
        "whole image resized with bicubic resampling, stored as uint8 (as kdtool predict reads a file)",
        "split": {
            "method": "test only" if test_only else "stratified by class, whole groups, seeded",
            "fractions": None if test_only else [float(f) for f in fractions],
            "seed": None if test_only else int(seed),
            "grouped_by": listing.source.get("group_column"),
        },
        "counts": counts,
        "groups": n_groups,
        "images": int(len(kept)),
        "skipped": skipped,
        "audit": audit_summary(pairs),
        "inputs_sha256": inputs_sha,
    }
    _write_atomically(out, arrays, names, info, _image_ids_csv(listing, kept, split_of, position))
    return info


def _write_atomically(out: Path, arrays: dict, names: list[str], info: dict, image_ids: str) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    except OSError as exc:
        raise RuntimeFailure(f"{out.parent}: cannot write there ({exc.strerror or exc})") from None
    try:
        for split, (x, y) in arrays.items():
            atomic_save_npy(tmp / f"X_{split}.npy", x)
            atomic_save_npy(tmp / f"y_{split}.npy", y)
        atomic_write_text(tmp / "classes.json", json.dumps(names, indent=1) + "\n")
        atomic_write_text(tmp / "image_ids.csv", image_ids)
        atomic_write_text(tmp / "dataset_info.json", json.dumps(info, indent=1) + "\n")
        if out.exists():
            raise InputError(f"{out}: appeared while the data were being written; left it alone")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it private; the folder is the user's data
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
