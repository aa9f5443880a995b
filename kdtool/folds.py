"""Folds of the training split that keep each lesion whole (no TensorFlow).

Out-of-fold predictions are only honest when no lesion sits in two folds: HAM10000 has up to six
images of one lesion, and a model that saw one of them recognises the others. An FData folder may
say which images belong together in ``image_ids.csv`` (the shared HAM10000 data ship one, and
``kdtool data images`` writes one): a CSV with at least the columns ``split``, ``position`` (row in that
split's arrays) and ``lesion_id`` or ``group``.
Without it every image is its own group, and out-of-fold estimates are optimistic.

Example:
    >>> groups = np.array(["a", "a", "b", "c", "c", "d"])
    >>> f = group_folds(groups, np.array([0, 0, 0, 1, 1, 1]), k=2, seed=0)
    >>> bool(f[0] == f[1] and f[3] == f[4])          # a lesion stays whole
    True
    >>> bool(f[0] != f[2] and f[3] != f[5])          # each class's lesions go to different folds
    True
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from kdtool.errors import InputError

#: The optional file of an FData folder that names each image's lesion.
GROUPS_FILE = "image_ids.csv"
_COLUMNS = ("split", "position")
#: The column naming each image's group, in order of preference.
GROUP_COLUMNS = ("group", "lesion_id")


def read_groups(root: str | os.PathLike, split: str, n: int) -> np.ndarray | None:
    """The lesion id of every image of ``split``, from ``root/image_ids.csv``; None without that file.

    Args:
        root: the FData folder.
        split: ``train``, ``val`` or ``test``.
        n: the number of images in that split (the CSV's rows for it must be positions 0..n-1).

    Returns:
        (n,) array of str, or None when the folder has no ``image_ids.csv``.

    Raises:
        InputError: the file lacks a column or does not cover the split exactly (one line naming it).
    """
    path = Path(root) / GROUPS_FILE
    if not path.is_file():
        return None
    ids: dict[int, str] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            group = next((c for c in GROUP_COLUMNS if c in fields), None)
            missing = [c for c in _COLUMNS if c not in fields] + ([] if group else ["lesion_id (or group)"])
            if missing:
                raise InputError(
                    f"{path}: missing column(s) {', '.join(missing)} (needs split, position and lesion_id or group)"
                )
            for row in reader:
                if row["split"] == split:
                    ids[int(row["position"])] = row[group]
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None
    if sorted(ids) != list(range(n)):
        raise InputError(
            f"{path}: its {split!r} rows do not cover positions 0..{n - 1} exactly ({len(ids)} rows for {n} images)"
        )
    return np.array([ids[i] for i in range(n)], dtype=str)


def group_folds(groups: np.ndarray | None, labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold (0..k-1) for every image: whole groups per fold, each class spread evenly over the folds.

    Groups are shuffled (``seed``) and each goes to the fold that holds the fewest images of its
    class so far (a group's class is its first image's: one lesion has one diagnosis).

    Args:
        groups: (N,) group id per image (lesion ids), or None: every image its own group.
        labels: (N,) integer labels.
        k: number of folds, >= 2.
        seed: shuffling seed.

    Returns:
        (N,) int64 fold index.

    Raises:
        ValueError: k < 2, or fewer groups than folds.
    """
    labels = np.asarray(labels)
    n = len(labels)
    groups = np.arange(n).astype(str) if groups is None else np.asarray(groups)
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    names, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    if len(names) < k:
        raise ValueError(f"{len(names)} group(s) cannot fill {k} folds")
    order = np.random.default_rng(seed).permutation(len(names))
    sizes = np.bincount(inverse, minlength=len(names))
    filled = np.zeros((k, int(labels.max()) + 1), dtype=np.int64)
    fold_of_group = np.empty(len(names), dtype=np.int64)
    for g in order:
        c = int(labels[first[g]])
        f = int(np.argmin(filled[:, c]))
        fold_of_group[g] = f
        filled[f, c] += sizes[g]
    return fold_of_group[inverse]
