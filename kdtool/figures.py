"""ROC curves and reliability diagrams as PNG files, for any command that has the numbers.

matplotlib is imported inside each function (Agg backend): the light install on a device has no
matplotlib, so a caller there catches ``ImportError`` and skips the plot with a note. Files are written
atomically. The curves come from :func:`kdtool.metrics.roc_points` and the bins from
:func:`kdtool.reliability.reliability_bins`, so a plot can be drawn again from a JSON record.

Example:
    >>> import numpy as np
    >>> from kdtool.metrics import roc_points
    >>> fpr, tpr = roc_points(np.array([0, 1, 1]), np.array([0.2, 0.9, 0.4]))
    >>> plot_roc({"mel": (fpr, tpr)}, Path("roc.png"), "student (val)", highlight="mel")  # doctest: +SKIP
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from kdtool.data import atomic_write_bytes


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported (it is not part of the device install).

    Returns:
        True when the plots of this module can be drawn.

    Example:
        >>> isinstance(matplotlib_available(), bool)
        True
    """
    try:
        import matplotlib  # noqa: F401  (only asking whether it imports)
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


def plot_roc(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: Path,
    title: str,
    aucs: Mapping[str, float | None] | None = None,
    highlight: str | None = None,
) -> None:
    """One-vs-rest ROC curves of every class in one panel, the class of concern drawn thick.

    Args:
        curves: class name -> ``(fpr, tpr)``; classes with empty curves are left out.
        path: PNG to write.
        title: figure title (model and split).
        aucs: class name -> ROC AUC, shown in the legend.
        highlight: the class of concern (thick line, first in the legend).

    Raises:
        ImportError: matplotlib is not installed.

    Example:
        >>> plot_roc({"mel": ([0, 0.2, 1], [0, 0.7, 1])}, Path("roc.png"), "s", {"mel": 0.85})  # doctest: +SKIP
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    names = sorted(curves, key=lambda n: (n != highlight, str(n)))
    for name in names:
        fpr, tpr = curves[name]
        if len(fpr) == 0:
            continue
        auc = (aucs or {}).get(name)
        label = f"{name} (AUC {auc:.3f})" if auc is not None else str(name)
        thick = name == highlight
        ax.plot(fpr, tpr, lw=2.4 if thick else 1.1, alpha=1.0 if thick else 0.75, label=label, zorder=3 if thick else 2)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity (false-positive rate)", title=title)
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_reliability(bins: Mapping, path: Path, title: str, ece: float | None = None) -> None:
    """A reliability diagram: accuracy against mean confidence per bin, bars sized by image count.

    Args:
        bins: :func:`kdtool.reliability.reliability_bins`'s record (edges, confidence, accuracy, count).
        path: PNG to write.
        title: figure title (model and split).
        ece: the expected calibration error, shown in the title.

    Raises:
        ImportError: matplotlib is not installed.

    Example:
        >>> bins = {"edges": [0, 0.5, 1], "confidence": [None, 0.8], "accuracy": [None, 0.6], "count": [0, 9]}
        >>> plot_reliability(bins, Path("reliability.png"), "student (val)", ece=0.2)  # doctest: +SKIP
    """
    plt = _pyplot()
    edges = list(bins["edges"])
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(4.4, 4.8), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    left = edges[:-1]
    acc = [a if a is not None else 0.0 for a in bins["accuracy"]]
    ax.bar(left, acc, width=width, align="edge", edgecolor="black", lw=0.5, alpha=0.8, label="accuracy")
    pts = [(c, a) for c, a in zip(bins["confidence"], bins["accuracy"], strict=True) if c is not None]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", color="black", ms=3, label="mean confidence")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8, label="calibrated")
    ax.set(ylim=(0, 1), ylabel="accuracy")
    ax.set_title(title + (f"  (ECE {ece:.3f})" if ece is not None else ""), fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax_n.bar(left, bins["count"], width=width, align="edge", color="grey", edgecolor="black", lw=0.5)
    ax_n.set(xlim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="images")
    fig.tight_layout()
    _save(fig, path)
