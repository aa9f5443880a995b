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
                p, rec, f, _ = sk.precision_recall_fscore_support(
                    y_true, y_pred, labels=labels, average=avg, zero_division=0
                )
                assert r[avg] == pytest.approx({"precision": p, "recall": rec, "f1": f})
            p, rec, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, name in enumerate(names):
        assert r["per_class"][name] == pytest.approx({"precision": p[i], "recall": rec[i], "f1": f[i], "support": s[i]})
    assert r["confusion_matrix"] == sk.confusion_matrix(y_true, y_pred, labels=labels).tolist()


def test_melanoma_sensitivity_and_agreement():
    names = ["nv", "mel"]
    r = classification_report(np.array([1, 1, 1, 1, 0]), np.array([1, 0, 0, 0, 0]), names)
    assert r["melanoma_sensitivity"] == pytest.approx(0.25)
    assert agreement(np.array([1, 2, 3]), np.array([1, 2, 0])) == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_auc_and_specificity_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    k, n = 4, 400
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y] * rng.uniform(0, 1, (n, 1))
    logits = np.round(logits, 1)  # ties exercise the averaged ranks
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names = ["nv", "mel", "bkl", "bcc"]
    r = classification_report(y, probs.argmax(1), names, probabilities=probs)
    assert r["roc_auc_macro"] == pytest.approx(sk.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    tn, fp, fn, tp = sk.confusion_matrix(y == 1, probs.argmax(1) == 1).ravel()
    assert r["melanoma_specificity"] == pytest.approx(tn / (tn + fp))
    assert r["melanoma_sensitivity"] == pytest.approx(tp / (tp + fn))
    assert 0.0 <= r["ece"] <= 1.0


def test_ece_by_hand():
    from kdtool.metrics import expected_calibration_error

    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    # bin 0.9: accuracy 0.5, confidence 0.9 -> 0.4; bin 0.6: accuracy 1.0, confidence 0.6 -> 0.4
    assert expected_calibration_error(y, probs) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
