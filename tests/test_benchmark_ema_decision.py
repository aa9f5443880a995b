"""benchmarks/ema_decision.py: ema_rule.md applied to paired int8 differences, and the pairing check."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def ema():
    return load_benchmark("ema_decision")


def _doc(deltas: dict[str, list[float]]) -> dict:
    rows = {s: {f"{k}_vs_baseline": {"values": deltas.get(k, [0.0, 0.0, 0.0])} for k, _ in
                [("int8_balanced_accuracy", 0), ("int8_accuracy", 0), ("int8_melanoma_sensitivity", 0),
                 ("int8_roc_auc", 0)]} for s in ("student_efficientnet_lite0", "student_alone")}
    return {"command": "python benchmarks/recipes.py ...", "seeds": [0, 1, 2], "int8": True,
            "baseline": "d96_la_v8e120", "melanoma_sensitivity": 0.6,
            "variants": {"d96_la_v8e120": {"models": {}}, "d96_la_v8e120_ema": {"models": rows}}}


def test_each_condition_of_the_rule_can_fail(ema):
    good = {"int8_balanced_accuracy": [0.01, 0.02, -0.005], "int8_accuracy": [0.0, 0.01, -0.01],
            "int8_melanoma_sensitivity": [-0.03, 0.0, 0.0], "int8_roc_auc": [-0.002, 0.0, 0.0]}
    assert ema.decide(_doc(good))["adopt"]
    for key, bad in [("int8_balanced_accuracy", [0.03, -0.001, -0.001]),  # mean up, one seed gains
                     ("int8_accuracy", [0.0, 0.0, -0.001]),
                     ("int8_melanoma_sensitivity", [-0.07, 0.0, 0.0]),     # mean -2.3 points
                     ("int8_roc_auc", [-0.01, 0.0, 0.0])]:
        verdict = ema.decide(_doc({**good, key: bad}))
        assert not verdict["adopt"], key
        assert sum(not ok for ok in verdict["checks"].values()) == 1, key


def test_pairing_compares_the_raw_curve_with_the_baseline(ema, tmp_path):
    for variant, column, values in [("d96_la_v8e120", "val_balanced_accuracy", [0.5, 0.6]),
                                    ("d96_la_v8e120_ema", "val_balanced_accuracy_raw", [0.5, 0.625])]:
        folder = tmp_path / f"{variant}_t" / "s0" / "student_alone"
        folder.mkdir(parents=True)
        rows = "".join(f"{i + 1},{v},0.1\n" for i, v in enumerate(values))
        (folder / "history.csv").write_text(f"epoch,{column},loss\n" + rows)
    pairs = ema.pairing(tmp_path, "t", [0])
    assert pairs["s0 student_alone"] == {"epochs": 2, "max_abs_diff": pytest.approx(0.025)}
    assert pairs["s0 student_efficientnet_lite0"] is None


def test_main_writes_the_verdict_and_refuses_a_result_without_both_variants(ema, tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_doc({"int8_balanced_accuracy": [-0.01, -0.01, 0.02]})))
    assert ema.main(["--recipes", str(path), "--root", str(tmp_path), "--json", str(tmp_path / "d.json"),
                     "--md", str(tmp_path / "d.md")]) == 0
    md = (tmp_path / "d.md").read_text()
    assert "the default stays 0 (off)" in md and "| student_efficientnet_lite0 | bal acc | -1.0 | -1.0 | +2.0 | +0.0 |" in md
    assert json.loads((tmp_path / "d.json").read_text())["verdict"]["adopt"] is False
    doc = _doc({})
    del doc["variants"]["d96_la_v8e120_ema"]
    path.write_text(json.dumps(doc))
    with pytest.raises(SystemExit) as exc:
        ema.main(["--recipes", str(path)])
    assert exc.value.code == 2


def test_seeds_pool_across_files_and_a_seed_in_two_files_is_refused(ema, tmp_path):
    first, second = _doc({"int8_balanced_accuracy": [0.01, -0.02]}), _doc({"int8_balanced_accuracy": [0.03]})
    first["seeds"], second["seeds"] = [0, 1], [2]
    for doc in (first, second):  # _doc gives three values per metric: keep one per seed
        for row in doc["variants"]["d96_la_v8e120_ema"]["models"].values():
            for cell in row.values():
                cell["values"] = cell["values"][:len(doc["seeds"])]
    first["machine"], second["machine"] = {"cpu_model": "Intel"}, {"cpu_model": "AMD"}
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, doc in zip(paths, (first, second)):
        path.write_text(json.dumps(doc))
    args = ["--root", str(tmp_path), "--json", str(tmp_path / "d.json"), "--md", str(tmp_path / "d.md")]
    assert ema.main(["--recipes", str(paths[0]), "--recipes", str(paths[1]), *args]) == 0
    out = json.loads((tmp_path / "d.json").read_text())
    assert out["verdict"]["paired"]["int8_balanced_accuracy"] == [0.01, -0.02, 0.03]
    assert out["verdict"]["adopt"] is True  # mean +0.7 points, 2 of 3 seeds gain
    assert "seed 0: Intel" in (tmp_path / "d.md").read_text() and "seed 2: AMD" in (tmp_path / "d.md").read_text()
    with pytest.raises(SystemExit) as exc:
        ema.main(["--recipes", str(paths[0]), "--recipes", str(paths[0]), *args])
    assert exc.value.code == 2
