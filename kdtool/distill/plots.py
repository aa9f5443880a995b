"""Training curves and confusion-matrix plots (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdtool.data import atomic_write_bytes


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(history: dict, path: Path, title: str) -> None:
    """Loss and accuracy per epoch, train vs validation.

    The accuracy panel also shows validation balanced accuracy, the score ``--select-best``
    chooses each model's kept epoch by.

    Args:
        history: ``keras.callbacks.History.history``-like dict of lists.
        path: PNG to write.
        title: figure title (the model name).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=False):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(
                    np.arange(1, len(values) + 1),
                    values,
                    style,
                    marker="o",
                    ms=3,
                    label=(f"validation {key}" if prefix else f"train {key}"),
                )
        values = history.get("val_balanced_accuracy") if key == "accuracy" else None
        if values:
            ax.plot(np.arange(1, len(values) + 1), values, ":", ms=3, label="validation balanced accuracy")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def plot_confusion(cm: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (recall on the diagonal) with counts.

    Args:
        cm: K x K counts (rows: true class).
        class_names: K names.
        path: PNG to write.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * k, 0.8 + 0.7 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, path)
    plt.close(fig)


def plot_sweep(
    temperatures: Sequence[float], alphas: Sequence[float], scores: np.ndarray, path: Path, title: str
) -> None:
    """Heatmap of validation balanced accuracy over the (temperature, alpha) sweep grid.

    Args:
        temperatures: row values (T).
        alphas: column values (alpha, the hard-label weight).
        scores: (len(temperatures), len(alphas)) array in [0, 1]; NaN where not run.
        path: PNG to write.
        title: figure title (the teacher).

    Example:
        >>> plot_sweep([1, 4], [0.1, 0.5], np.array([[.5, .6], [.55, .62]]), Path("s.png"), "t")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = np.asarray(scores, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * len(alphas) + 2.5, 0.8 * len(temperatures) + 1.8))
    im = ax.imshow(scores * 100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_yticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
    ax.set_xlabel("alpha (hard-label weight)")
    ax.set_ylabel("temperature T")
    best = np.unravel_index(np.nanargmax(scores), scores.shape) if np.isfinite(scores).any() else None
    for (i, j), v in np.ndenumerate(scores):
        if np.isfinite(v):
            ax.text(
                j,
                i,
                f"{100 * v:.1f}" + (" *" if best == (i, j) else ""),
                ha="center",
                va="center",
                color="white" if v < np.nanmean(scores) else "black",
                fontsize=9,
            )
    fig.colorbar(im, ax=ax, label="val balanced accuracy, %")
    ax.set_title(title)
    _save(fig, path)
    plt.close(fig)
