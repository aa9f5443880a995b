"""``kdtool export --prior-shift auto``: the most accurate operating point whose balanced accuracy holds.

``--prior-shift TAU`` trades balanced accuracy (TAU = 0, a logit-adjusted model's own decisions) for
plain accuracy (TAU = 1). ``auto`` tries TAU in :data:`AUTO_TAUS`, each with its own melanoma floor
(chosen as export chooses it: on the out-of-fold logits when the run has them, else on validation),
and keeps the largest TAU at which the model's VALIDATION balanced accuracy is still at least
``--min-balanced-accuracy`` (0.60, issue #6's floor); if none reaches it, TAU = 0. Test is never
read. This rule was fixed before it was judged on test (``benchmarks/oof_floor_rule.md``).

Example:
    >>> import numpy as np
    >>> z = np.array([[2.0, 0.0], [2.0, 1.5], [0.0, 1.0], [0.0, 1.0]])   # class 1 frequent in train
    >>> tau, rec = choose_prior_shift(z, np.array([0, 0, 1, 1]), np.log([0.2, 0.8]), mel=None,
    ...                               floor_logits=None, floor_labels=None, target=0.6, confidence=0.95,
    ...                               min_balanced_accuracy=0.9)
    >>> tau, [c["val_balanced_accuracy"] for c in rec["candidates"]]   # at 0.5 the 2nd image turns to class 1
    (0.25, [1.0, 1.0, 0.75])
"""

from __future__ import annotations

import numpy as np

from kdtool.export.sensitivity import floor_offset
from kdtool.metrics import classification_report

#: The prior shifts ``--prior-shift auto`` chooses from (the ones measured in README, Performance).
AUTO_TAUS = (0.0, 0.25, 0.5)
#: ``--min-balanced-accuracy``'s default.
DEFAULT_MIN_BALANCED = 0.60


def choose_prior_shift(val_logits: np.ndarray, val_labels: np.ndarray, log_prior: np.ndarray, mel: int | None,
                       floor_logits: np.ndarray | None, floor_labels: np.ndarray | None, target: float,
                       confidence: float, min_balanced_accuracy: float = DEFAULT_MIN_BALANCED,
                       taus=AUTO_TAUS, also_val: bool = False) -> tuple[float, dict]:
    """The largest TAU of ``taus`` whose validation balanced accuracy, melanoma floor included, is >= the minimum.

    Args:
        val_logits: (N, K) validation logits of the model before any prior shift (a majority offset, if any, included).
        val_labels: (N,) validation labels.
        log_prior: (K,) log class frequencies of the train split.
        mel: the melanoma class to hold a floor under, or None (no floor).
        floor_logits, floor_labels: where the floor is chosen (out-of-fold logits of the train split and
            its labels); None: on the validation logits.
        target, confidence: the floor (see :func:`kdtool.export.sensitivity.sensitivity_offset`).
        min_balanced_accuracy: the validation balanced accuracy a TAU must keep.
        taus: candidates.
        also_val: with ``floor_logits``, the floor must hold on validation too (the larger offset).

    Returns:
        ``(tau, record)``: the record lists every candidate's melanoma offset, validation accuracy and
        balanced accuracy, the minimum, the choice and whether a melanoma floor applied
        (``melanoma_floor``; JSON-ready, for the sidecar).
    """
    val_logits = np.asarray(val_logits, dtype=np.float64)
    candidates = []
    for tau in taus:
        shift = tau * np.asarray(log_prior, dtype=np.float64)
        z = val_logits + shift
        offset = 0.0
        if mel is not None:
            offset = floor_offset(z, val_labels, mel, target, confidence,
                                  None if floor_logits is None else floor_logits + shift, floor_labels,
                                  both=also_val)["offset"]
            z[:, mel] += offset
        report = classification_report(np.asarray(val_labels), np.argmax(z, axis=1), list(range(z.shape[1])))
        candidates.append({"tau": float(tau), "melanoma_offset": round(float(offset), 6),
                           "val_accuracy": report["accuracy"], "val_balanced_accuracy": report["balanced_accuracy"]})
    ok = [c["tau"] for c in candidates if c["val_balanced_accuracy"] >= min_balanced_accuracy - 1e-12]
    tau = max(ok) if ok else 0.0
    return tau, {"rule": "largest candidate whose validation balanced accuracy (floor included) is >= the minimum",
                 "min_balanced_accuracy": float(min_balanced_accuracy), "candidates": candidates, "chosen": tau,
                 "met": bool(ok), "melanoma_floor": mel is not None}
