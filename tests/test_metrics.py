"""kdtool's numpy metrics agree with scikit-learn."""

import numpy as np
import pytest

from kdtool.metrics import agreement, classification_report

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_with_absent_class(seed):
    rng = np.random.default_rng(seed)
    k = 5
    y_true = rng.integers(0, k - 1, 300)  # class 4 never appears in y_true
    y_pred = np.where(rng.uniform(size=300) < 0.6, y_true, rng.integers(0, k, 300))
    names = [f"c{i}" for i in range(k)]
    r = classification_report(y_true, y_pred, names)
    labels = list(range(k))
    assert r["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert r["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
            for avg in ("macro", "weighted"):
                p, rec, f, _ = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg,
                                                                  zero_division=0)
                assert r[avg] == pytest.approx({"precision": p, "recall": rec, "f1": f})
            p, rec, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, name in enumerate(names):
        assert r["per_class"][name] == pytest.approx(
            {"precision": p[i], "recall": rec[i], "f1": f[i], "support": s[i]})
    assert r["confusion_matrix"] == sk.confusion_matrix(y_true, y_pred, labels=labels).tolist()


def test_melanoma_sensitivity_and_agreement():
    names = ["nv", "mel"]
    r = classification_report(np.array([1, 1, 1, 1, 0]), np.array([1, 0, 0, 0, 0]), names)
    assert r["melanoma_sensitivity"] == pytest.approx(0.25)
    assert agreement(np.array([1, 2, 3]), np.array([1, 2, 0])) == pytest.approx(2 / 3)
