"""Split images into train, validation and test so that no group (lesion, patient) is in two splits.

HAM10000 photographs many lesions several times; a model that trained on one photograph of a lesion
recognises the others, so a split by image measures memory, not diagnosis. :func:`group_split` assigns
whole groups, class by class (each group counts under its most frequent label), so every split gets
about its share of every class's images, and it is seeded, so the same inputs give the same split.

Example:
    >>> labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    >>> groups = np.array(["a", "a", "b", "c", "d", "e", "e", "f", "g", "h"])
    >>> s = group_split(labels, groups, (0.6, 0.2, 0.2), seed=0)
    >>> bool(s[0] == s[1] and s[5] == s[6])         # a group stays whole
    True
    >>> sorted(set(s[labels == 0].tolist())) == sorted(set(s[labels == 1].tolist())) == [0, 1, 2]
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kdtool.errors import InputError

#: The default train, validation and test shares, in percent.
DEFAULT_SPLIT = (70, 10, 20)


def parse_split(text: str) -> tuple[float, float, float]:
    """Read ``--split`` (three shares for train, validation and test, e.g. ``70,10,20``) as fractions.

    Args:
        text: three non-negative numbers separated by commas; they are scaled to sum to 1.

    Returns:
        (train, val, test) fractions summing to 1.

    Raises:
        InputError: not three numbers, a negative one, or all zero.

    Example:
        >>> parse_split("70,10,20")
        (0.7, 0.1, 0.2)
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or any(v < 0 or not np.isfinite(v) for v in values) or sum(values) <= 0:
        raise InputError(
            f"--split: expected three non-negative shares for train,val,test (e.g. 70,10,20), got {text!r}"
        )
    total = sum(values)
    return tuple(round(v / total, 10) for v in values)  # type: ignore[return-value]


def group_labels(labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each group's label (its most frequent; ties to the lower class index) and size.

    Args:
        labels: (N,) integer class of every image.
        groups: (N,) group id of every image.

    Returns:
        ``(unique_groups, group_label, group_size)`` and, per image, nothing else: use
        ``np.searchsorted(unique_groups, groups)`` to map back.

    Example:
        >>> group_labels(np.array([1, 1, 0]), np.array(["x", "x", "y"]))[1].tolist()
        [1, 0]
    """
    uniq, inverse = np.unique(groups, return_inverse=True)
    k = int(labels.max(initial=0)) + 1
    counts = np.zeros((len(uniq), k), dtype=np.int64)
    np.add.at(counts, (inverse.ravel(), labels), 1)
    return uniq, counts.argmax(axis=1), counts.sum(axis=1)


def group_split(
    labels: np.ndarray,
    groups: np.ndarray,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Assign every image to split 0 (train), 1 (val) or 2 (test), keeping each group in one split.

    Per class, the groups are shuffled (seeded); each split with a non-zero share first gets one group,
    then each remaining group goes to the split furthest below its share of that class's images.

    Args:
        labels: (N,) integer classes.
        groups: (N,) group ids (use each image's own id when there are no groups).
        fractions: the three shares, summing to 1; a zero share gets no images.
        seed: the shuffle's seed.
        class_names: names for error messages.

    Returns:
        (N,) int array of split indices.

    Raises:
        InputError: a class with fewer groups than splits to fill (one line naming it).
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    groups = np.asarray(groups).astype(str).ravel()
    frac = np.asarray(fractions, dtype=np.float64)
    active = np.flatnonzero(frac > 0)
    uniq, g_label, g_size = group_labels(labels, groups)
    rng = np.random.default_rng(seed)
    g_split = np.full(len(uniq), -1, dtype=np.int64)
    for c in range(int(labels.max(initial=0)) + 1):
        members = np.flatnonzero(g_label == c)
        if members.size == 0:
            continue
        if members.size < active.size:
            name = class_names[c] if class_names is not None else str(c)
            raise InputError(
                f"class {name!r} has {members.size} group(s) (lesions or patients); splitting it into "
                f"{active.size} parts needs at least {active.size} (merge or drop the class, or change --split)"
            )
        members = members[rng.permutation(members.size)]
        target = frac * g_size[members].sum()
        have = np.zeros(3)
        for i, g in enumerate(members):
            if i < active.size:
                s = active[i]
            else:
                s = active[np.argmax((target - have)[active])]
            g_split[g] = s
            have[s] += g_size[g]
    return g_split[np.searchsorted(uniq, groups)]
