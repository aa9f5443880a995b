"""benchmarks/deep_student_decision.py: deep_student_rule.md applied to paired int8 differences and run files."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest

from conftest import load_benchmark

BASE, DEEP, KD = "d96_la_v8e120", "d96_la_v8e120_c2", "student_efficientnet_lite0"


@pytest.fixture(scope="module")
def deep():
    return load_benchmark("deep_student_decision")


@pytest.fixture(scope="module")
def pool():
    return load_benchmark("ema_decision").pool


def _doc(deltas: dict[str, list[float]]) -> dict:
    rows = {s: {f"{k}_vs_baseline": {"values": deltas.get(k, [0.0, 0.0, 0.0])} for k in
                ("int8_balanced_accuracy", "int8_accuracy", "int8_melanoma_sensitivity", "int8_roc_auc")}
            for s in (KD, "student_alone")}
    return {"command": "python benchmarks/recipes.py ...", "seeds": [0, 1, 2], "int8": True, "baseline": BASE,
            "melanoma_sensitivity": 0.6, "variants": {BASE: {"models": {}}, DEEP: {"models": rows}}}


def _facts(size=162_352, passed=(True, True, True), base_passed=(True, True, True), teacher="ab"):
    return {s: {BASE: {"teacher_sha256": ["ab"], "int8_bytes": 147_296, "check_passed": base_passed[s]},
                DEEP: {"teacher_sha256": [teacher], "int8_bytes": size, "check_passed": passed[s]}}
            for s in range(3)}


GOOD = {"int8_balanced_accuracy": [0.01, 0.02, -0.005], "int8_accuracy": [0.0, 0.01, -0.01],
        "int8_melanoma_sensitivity": [-0.03, 0.0, 0.0], "int8_roc_auc": [0.002, 0.0, -0.001]}


def test_each_condition_of_the_rule_can_fail(deep, pool):
    assert deep.decide(pool([_doc(GOOD)], ["r"], variant=DEEP), _facts())["adopt"]
    cases = [({"int8_balanced_accuracy": [0.03, -0.001, -0.001]}, {}),  # mean up, one seed gains
             ({"int8_roc_auc": [0.001, -0.001, 0.0]}, {}),              # mean 0 is not a gain
             ({"int8_accuracy": [0.0, 0.0, -0.001]}, {}),
             ({"int8_melanoma_sensitivity": [-0.07, 0.0, 0.0]}, {}),     # mean -2.3 points
             ({}, {"size": 200_001}),
             ({}, {"passed": (True, False, True)})]
    for change, facts in cases:
        verdict = deep.decide(pool([_doc({**GOOD, **change})], ["r"], variant=DEEP), _facts(**facts))
        assert not verdict["adopt"], (change, facts)
        assert sum(not ok for ok in verdict["checks"].values()) == 1, (change, facts)
    # as many failed checks as today's student is allowed
    same = deep.decide(pool([_doc(GOOD)], ["r"], variant=DEEP),
                       _facts(passed=(False, True, True), base_passed=(True, True, False)))
    assert same["adopt"]


def test_a_different_teacher_breaks_the_pairing(deep, pool):
    verdict = deep.decide(pool([_doc(GOOD)], ["r"], variant=DEEP), _facts(teacher="cd"))
    assert all(verdict["checks"].values()) and not verdict["paired_ok"] and not verdict["adopt"]


def test_facts_reads_the_run_folders(deep, tmp_path):
    run = tmp_path / f"{DEEP}_t" / "s0"
    (run / "export_mel0.6").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"models": [
        {"name": "teacher_t", "role": "teacher", "file": "teacher_t.keras", "sha256": "ab"},
        {"name": KD, "role": "student", "file": f"{KD}.keras", "sha256": "cd"}]}))
    # the teacher's weights, as a .keras zip holds them; its metadata (the save date) does not count
    for folder, date in ((run, "today"), (tmp_path / "other", "yesterday")):
        folder.mkdir(exist_ok=True)
        with zipfile.ZipFile(folder / "teacher_t.keras", "w") as zf:
            zf.writestr("metadata.json", json.dumps({"date_saved": date}))
            zf.writestr("model.weights.h5", b"weights")
    assert deep._weights_sha256(run / "teacher_t.keras") == deep._weights_sha256(tmp_path / "other" / "teacher_t.keras")
    assert deep._weights_sha256(tmp_path / "missing.keras") is None
    (run / "export_mel0.6" / f"{KD}.int8.tflite").write_bytes(b"x" * 123)
    (run / "export_mel0.6" / f"{KD}.int8.json").write_text(json.dumps({"check": {"passed": False}}))
    found = deep.facts(tmp_path, "t", [0], 0.6)
    assert found[0][DEEP] == {"teacher_sha256": [hashlib.sha256(b"weights").hexdigest()], "int8_bytes": 123,
                              "check_passed": False}
    assert found[0][BASE] == {"teacher_sha256": None, "int8_bytes": None, "check_passed": None}


def test_main_writes_the_verdict_and_refuses_a_result_without_both_variants(deep, tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_doc(GOOD)))
    assert deep.main(["--recipes", str(path), "--root", str(tmp_path), "--json", str(tmp_path / "d.json"),
                      "--md", str(tmp_path / "d.md")]) == 0
    md = (tmp_path / "d.md").read_text()
    # no run files under --root: the pairing is not confirmed, whatever the numbers say
    assert "NOT confirmed" in md and "the default student stays as it is" in md
    assert f"| {KD} | bal acc | +1.0 | +2.0 | -0.5 | +0.8 |" in md
    assert json.loads((tmp_path / "d.json").read_text())["verdict"]["adopt"] is False
    doc = _doc({})
    del doc["variants"][DEEP]
    path.write_text(json.dumps(doc))
    with pytest.raises(SystemExit) as exc:
        deep.main(["--recipes", str(path)])
    assert exc.value.code == 2


def test_two_seeds_are_reported_as_unfinished_not_decided(deep, pool, tmp_path):
    doc = _doc(GOOD)
    doc["seeds"] = [0, 1]
    for row in doc["variants"][DEEP]["models"].values():
        for cell in row.values():
            cell["values"] = cell["values"][:2]
    verdict = deep.decide(pool([doc], ["r"], variant=DEEP), {s: f for s, f in _facts().items() if s < 2})
    assert all(verdict["checks"].values()) and verdict["paired_ok"]
    assert not verdict["finished"] and not verdict["adopt"]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    deep.main(["--recipes", str(path), "--root", str(tmp_path), "--json", str(tmp_path / "d.json"),
               "--md", str(tmp_path / "d.md")])
    md = (tmp_path / "d.md").read_text()
    assert "Unfinished: seeds [0, 1]" in md and "The rule (distilled" not in md


def test_recorded_facts_stand_in_only_for_missing_folders_of_the_same_runs(deep, tmp_path):
    path, old = tmp_path / "r.json", tmp_path / "old.json"
    path.write_text(json.dumps(_doc(GOOD)))
    facts = _facts()
    # recorded in another order than the pooled seeds: its "seeds" list says which value is which seed's
    recorded = {"seeds": [2, 0], "verdict": {"paired": {k: [v[2], v[0]] for k, v in GOOD.items()}},
                "runs": {"2": facts[2], "0": facts[0]}}
    old.write_text(json.dumps(recorded))
    args = ["--recipes", str(path), "--root", str(tmp_path), "--json", str(tmp_path / "d.json"),
            "--md", str(tmp_path / "d.md"), "--recorded", str(old)]
    assert deep.main(args) == 0
    out = json.loads((tmp_path / "d.json").read_text())
    assert out["runs"]["0"] == facts[0] and out["runs"]["2"] == facts[2] and out["seeds"] == [0, 1, 2]
    assert out["runs"]["1"][DEEP]["int8_bytes"] is None and "no facts" in out["facts_from"]["1"]
    assert "from --recorded" in out["facts_from"]["0"] and not out["verdict"]["paired_ok"]
    assert "seed 0: 147296 / 162352 bytes" in (tmp_path / "d.md").read_text()
    # the facts of other runs of seed 0 (other paired differences) are not taken
    recorded["verdict"]["paired"]["int8_accuracy"][1] += 0.001
    old.write_text(json.dumps(recorded))
    deep.main(args)
    out = json.loads((tmp_path / "d.json").read_text())
    assert out["runs"]["2"] == facts[2] and out["runs"]["0"][DEEP]["int8_bytes"] is None
    assert "other runs" in out["facts_from"]["0"]
    for bad in ("not json", "[1, 2]"):
        old.write_text(bad)
        with pytest.raises(SystemExit) as exc:
            deep.main(args)
        assert exc.value.code == 2


def test_folders_on_disk_win_and_a_partly_missing_seed_is_not_filled(deep, pool):
    doc = pool([_doc(GOOD)], ["r"], variant=DEEP)
    found = _facts()
    found[1] = {BASE: dict.fromkeys(deep.FACT_KEYS), DEEP: found[1][DEEP]}   # one variant's folder gone
    found[2] = {v: dict.fromkeys(deep.FACT_KEYS) for v in (BASE, DEEP)}      # both gone
    other = {BASE: {**_facts()[0][BASE], "int8_bytes": 1}, DEEP: {**_facts()[0][DEEP], "int8_bytes": 2}}
    recorded = {"seeds": [0, 1, 2], "verdict": {"paired": GOOD}, "runs": {"0": other, "1": other, "2": other}}
    filled, why = deep.with_recorded(found, doc, recorded)
    assert filled[0] == _facts()[0] and 0 not in why  # its folders are there: the recording is not used
    assert filled[1][BASE]["int8_bytes"] is None and "missing under --root" in why[1]
    assert filled[2] == other and "from --recorded" in why[2]
    assert not deep.decide(doc, filled)["paired_ok"]
