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
