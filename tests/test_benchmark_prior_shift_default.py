"""benchmarks/prior_shift_default.py: prior_shift_default_rule.md applied to bench records (no model)."""

from __future__ import annotations

import doctest

import pytest
from conftest import load_benchmark

KD, ALONE = "student_efficientnet_lite0", "student_alone"


@pytest.fixture(scope="module")
def psd():
    return load_benchmark("prior_shift_default")


def _row(seed, student, acc, bal, mel, auc=0.93, export="auto", tau=0.5):
    return {"seed": seed, "student": student, "tau": tau, "export": export, "size_bytes": 163_832,
            "val_balanced_accuracy": 0.64, "offset": 0.1,
            "test": {"accuracy": acc, "balanced_accuracy": bal, "macro_f1": 0.55, "melanoma_sensitivity": mel,
                     "roc_auc": auc}}


def _rows(kd, alone=((0.70, 0.58, 0.60),) * 3, **kw):
    return ([_row(s, KD, *v, **kw) for s, v in enumerate(kd)] + [_row(s, ALONE, *v, **kw) for s, v in enumerate(alone)])


GOOD = ((0.75, 0.63, 0.62), (0.76, 0.62, 0.61), (0.73, 0.64, 0.63))


def test_docstring_examples(psd):
    assert doctest.testmod(psd).failed == 0


def test_adopts_when_every_criterion_holds(psd):
    d = psd.decide(_rows(GOOD, alone=((0.70, 0.58, 0.6), (0.70, 0.57, 0.6), (0.70, 0.59, 0.6))))
    assert d["adopt"] and [c["passed"] for c in d["criteria"]] == [True, True, True, True]
    assert d["criteria"][1]["seeds_meeting"] == [0, 1]  # seed 2's accuracy is 73


@pytest.mark.parametrize("kd, failed", [
    (((0.73, 0.63, 0.62), (0.74, 0.62, 0.61), (0.74, 0.64, 0.63)), [0]),        # mean accuracy 73.7
    (((0.78, 0.63, 0.50), (0.75, 0.62, 0.65), (0.73, 0.64, 0.66)), [1]),        # means hold, one seed meets
    (((0.76, 0.63, 0.62), (0.76, 0.59, 0.61), (0.76, 0.64, 0.58)), [1]),        # again one seed
])
def test_each_threshold_criterion_can_fail_alone(psd, kd, failed):
    d = psd.decide(_rows(kd))
    assert not d["adopt"]
    assert [i for i, c in enumerate(d["criteria"]) if not c["passed"]] == failed


def test_auc_and_the_margin_over_the_student_alone(psd):
    assert [c["passed"] for c in psd.decide(_rows(GOOD, auc=0.915))["criteria"]] == [True, True, False, True]
    # the student alone as good as the distilled one on two seeds: the mean gain is below the spread
    close = psd.decide(_rows(GOOD, alone=((0.75, 0.63, 0.6), (0.75, 0.62, 0.6), (0.7, 0.55, 0.6))))
    assert [c["passed"] for c in close["criteria"]] == [True, True, True, False]
    assert close["criteria"][3]["paired_gain"]["mean"] == pytest.approx(0.03)


def test_mismatched_seeds_never_adopt(psd):
    rows = _rows(GOOD)
    d = psd.decide([r for r in rows if not (r["student"] == ALONE and r["seed"] == 2)])
    assert not d["adopt"] and "same seeds" in d["why"]


def test_table_and_render_keep_fixed_shifts_apart_from_auto(psd):
    rows = _rows(GOOD) + _rows(((0.70, 0.66, 0.6),) * 3, export="fixed", tau=0.0)
    t = {(s["student"], s["export"]): s for s in psd.table(rows)}
    assert set(t) == {(KD, "0"), (KD, "auto"), (ALONE, "0"), (ALONE, "auto")}
    assert t[(KD, "auto")]["seeds_meeting"] == [0, 1]
    assert t[(KD, "0")]["test"]["balanced_accuracy"]["mean"] == pytest.approx(0.66)
    doc = {"command": "c", "machine_line": "m", "seeds": [0, 1, 2], "table": psd.table(rows), "results": rows,
           "decision": psd.decide(rows), "fixed_leads": {"0.25": False}, "wall_seconds": 1.0}
    md = psd.render(doc)
    assert "| student_efficientnet_lite0 | auto | 0.5, 0.5, 0.5 | 74.7 ± 1.5 |" in md
    assert "Verdict: adopt --prior-shift auto" in md
    assert "beats student_alone beyond the seed spread: yes (paired gain 5.0 ± 1.0 against a spread of 1.0)" in md
    assert "fixed --prior-shift 0.25 (table only, never adopted by this rule): would fail" in md
    assert md.startswith("# `kdtool export --prior-shift auto` as the default? (prior_shift_default_rule.md)")
    # another rule's candidate names itself; no rule: the tables without a verdict
    other = psd.render({**doc, "rule": "r.md", "candidate": "--prior-shift auto --melanoma-sensitivity 0.7",
                        "decision": {**doc["decision"], "adopt": False}})
    assert other.startswith("# `kdtool export --prior-shift auto --melanoma-sensitivity 0.7` as the default? (r.md)")
    assert "## Verdict: keep export's defaults" in other
    bare = psd.render({**doc, "rule": ""})
    assert "table only: no rule judges these seeds" in bare and "Verdict" not in bare and "| auto |" in bare


def test_main_refuses_a_folder_without_run_json(psd, tmp_path, capsys):  # calibrated_floor's tests cover the rest
    with pytest.raises(SystemExit) as exc:
        psd.main(["--runs", str(tmp_path), "--seeds", "0"])
    assert exc.value.code == 2 and "no run.json" in capsys.readouterr().err


def test_common_shift_compares_with_the_student_alone_at_the_distilled_students_shift(psd):
    # auto: 0.5 for the distilled student on every seed, 0.25 for the student alone on seeds 1 and 2
    rows = [_row(s, KD, *v) for s, v in enumerate(GOOD)]
    rows += [_row(0, ALONE, 0.72, 0.60, 0.6), _row(1, ALONE, 0.70, 0.62, 0.6, tau=0.25),
             _row(2, ALONE, 0.70, 0.63, 0.6, tau=0.25)]
    at_half = ((0.72, 0.60, 0.6), (0.72, 0.58, 0.6), (0.73, 0.59, 0.6))
    rows += [_row(s, ALONE, *v, export="fixed", tau=0.5) for s, v in enumerate(at_half)]
    rows += [_row(s, ALONE, 0.69, 0.64, 0.6, export="fixed", tau=0.25) for s in range(3)]
    own = psd.decide(rows)["criteria"][3]  # auto against auto: 0.5 against 0.25 on two seeds
    assert not own["passed"] and own["paired_gain"]["mean"] == pytest.approx(0.04 / 3)
    assert own["baseline_taus"] == [0.5, 0.25, 0.25]
    common = psd.decide(rows, common_shift=True)
    c4 = common["criteria"][3]
    assert common["adopt"] and c4["baseline_taus"] == [0.5, 0.5, 0.5]
    assert c4["paired_gain"]["mean"] == pytest.approx(0.04) and "at the same shift (0.5, 0.5, 0.5)" in c4["name"]


def test_common_shift_without_the_fixed_file_never_adopts(psd):
    rows = _rows(GOOD) + [_row(s, ALONE, 0.7, 0.5, 0.6, export="fixed", tau=0.5) for s in (0, 1)]
    d = psd.decide(rows, common_shift=True)
    assert not d["adopt"] and "fixed-shift files at student_efficientnet_lite0's shifts" in d["why"]
