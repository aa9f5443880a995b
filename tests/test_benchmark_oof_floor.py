"""benchmarks/oof_floor.py: lesion-disjoint folds and the floor chosen on out-of-fold logits (arrays, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_benchmark, write_fdata

from kdtool.data import load_fdata
from kdtool.export.sensitivity import binomial_lower_bound


@pytest.fixture(scope="module")
def oof():
    return load_benchmark("oof_floor")


def _ids(path, lesions, labels):
    rows = ["split,position,image_id,lesion_id,dx,label"]
    rows += [f"train,{i},ISIC_{i},{les},x,{lab}" for i, (les, lab) in enumerate(zip(lesions, labels))]
    rows += ["val,0,ISIC_v,HAM_v,x,0"]  # other splits are ignored
    path.write_text("\n".join(rows) + "\n")
    return path


def test_folds_keep_every_lesion_whole_and_spread_each_class(oof, tmp_path):
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4, size=60)  # 60 lesions of 1-3 images
    lesions = [f"L{j}" for j, s in enumerate(sizes) for _ in range(s)]
    labels = [j % 2 for j, s in enumerate(sizes) for _ in range(s)]
    f = oof.lesion_folds(_ids(tmp_path / "ids.csv", lesions, labels), len(lesions), 3, seed=1)
    assert set(f.tolist()) == {0, 1, 2}
    for les in set(lesions):
        assert len({int(f[i]) for i, name in enumerate(lesions) if name == les}) == 1
    y = np.asarray(labels)
    for c in (0, 1):
        per_fold = np.bincount(f[y == c], minlength=3)
        assert per_fold.max() - per_fold.min() <= 3  # at most one lesion's worth apart
    assert not np.array_equal(f, oof.lesion_folds(tmp_path / "ids.csv", len(lesions), 3, seed=2))


def test_folds_refuse_ids_that_do_not_cover_the_train_split(oof, tmp_path):
    path = _ids(tmp_path / "ids.csv", ["A", "B"], [0, 1])
    with pytest.raises(SystemExit, match="do not cover positions 0..2"):
        oof.lesion_folds(path, 3, 2, 0)


def test_compare_chooses_each_offset_on_its_own_source_and_judges_all_three(oof, tmp_path):
    fd = load_fdata(write_fdata(tmp_path / "FData", n=(150, 80, 60), class_names=["akiec", "mel", "nv"]))
    rng = np.random.default_rng(3)
    z = {s: rng.normal(size=(len(fd.labels(s)), 3)) for s in ("val", "test")}
    pool = rng.normal(size=(len(fd.labels("train")), 3))
    rows = oof.compare(z, pool, fd, taus=[0.0, 0.5], target=0.7, confidence=0.9)
    assert [(r["tau"], r["chosen_on"]) for r in rows] == [(t, s) for t in (0.0, 0.5) for s in (None, "val", "oof")]
    assert rows[0]["offset"] is None
    assert rows[0]["test"] == oof.rule_metrics(z["test"], fd.labels("test"), np.zeros(3), mel=1)
    for r in rows:
        if r["chosen_on"]:
            source = r["chosen_on"]
            n = int(np.sum((fd.labels("train") if source == "oof" else fd.labels("val")) == 1))
            found = round(r[source]["melanoma_sensitivity"] * n)
            assert r["offset"] >= 0 and binomial_lower_bound(found, n, 0.9) >= 0.7
    # random logits find about a third of the melanomas: both rules had to raise the logit, by different amounts
    assert rows[1]["offset"] > 0 and rows[2]["offset"] > 0 and rows[1]["offset"] != rows[2]["offset"]


def test_main_names_a_missing_model_file(oof, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        oof.main(["--run", str(tmp_path), "--model", "nope"])
    assert exc.value.code == 2 and "no such model file" in capsys.readouterr().err
