"""kdtool bench --compare's table (kdtool.bench.compare): 95% intervals where the bench JSONs carry them, the
class of concern's sensitivity, ECE and operating points; results written before those keys existed still work.
Records are written by hand here (the keys kdtool.bench.report documents); test_bench.py runs real benches."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kdtool.bench.compare import compare_table, load_results
from kdtool.bench.tables import concern_of, front_marks, interval_cell
from kdtool.cli import main


def _record(model: str, *, intervals: bool = True, concern: str = "mel", calibration: bool = True,
            point: dict | None = None, host: str = "x86") -> dict:  # fmt: skip
    rec = {
        "model": model, "size_bytes": 120_000, "accuracy": 0.7412, "balanced_accuracy": 0.6523,
        "melanoma_sensitivity": 0.58 if concern == "mel" else None, "latency_ms": {"median": 1.5, "p90": 2.0},
        "device": {"hostname": host, "machine": "x86_64", "cpu_model": "cpu"}, "runtime": "ai_edge_litert",
        "runtime_version": "2.0", "threads": 4, "batch": 1, "images_per_second": 600.0, "emulated": False,
        "operating_point": point,
    }  # fmt: skip
    if intervals:
        rec["class_of_concern"] = {"name": concern, "positives": 50, "negatives": 800, "sensitivity": 0.58,
                                   "specificity": 0.9}  # fmt: skip
        sens = [0.431, 0.718]
        rec["ci95"] = {"accuracy": [0.721, 0.762], "balanced_accuracy": [0.611, 0.688],
                       "class_of_concern_sensitivity": sens, "melanoma_sensitivity": sens}  # fmt: skip
        rec["bootstrap"] = {"n": 1000, "seed": 0, "groups": "lesion_id", "n_groups": 600, "dropped": {}}
    if calibration:
        rec["calibration"] = {"ece": 0.0412, "ece_ci95": [0.031, 0.058] if intervals else None, "bins": {}}
    return rec


def test_interval_cells():
    assert interval_cell(0.6523, [0.611, 0.688]) == "0.652 [0.61, 0.69]"
    assert interval_cell(0.6523, None) == "0.6523" and interval_cell(None, None) == "-"
    assert interval_cell(0.5, [None, None]) == "0.5000"
    assert concern_of(_record("a", concern="bcc"))[:2] == ("bcc", 0.58) and front_marks(False, True, True) == "s"


def test_compare_shows_intervals_ece_and_operating_points(tmp_path):
    summary = "balanced (tau -0.30, fitted on val, 852 images)"
    point = {"objective": "balanced", "fitted_on": "val", "fit_images": 852, "tau": -0.3, "bias": [0.1, -0.1],
             "temperature": None, "min_recall": [], "summary": summary}  # fmt: skip
    recs = [_record("s.int8.tflite", point=point), _record("s.int8.tflite", point=point, host="pi")]
    table = compare_table(recs)
    head, _, row, *_ = table.splitlines()
    assert "mel.sens" in head and "ECE" in head
    assert "0.741 [0.72, 0.76]" in row and "0.652 [0.61, 0.69]" in row and "0.580 [0.43, 0.72]" in row
    assert "0.041 [0.031, 0.058]" in row
    assert "95% intervals over the split's lesions" in table
    # one line per model, though it ran on two devices
    assert table.count(summary) == 1
    assert "operating points set at export: s.int8.tflite: balanced" in table


def test_old_results_keep_their_table(tmp_path):
    old = _record("old.tflite", intervals=False, calibration=False)
    old.pop("operating_point")
    old_point = _record("o.tflite", intervals=False, calibration=False, point={"prior_shift": 0.5})
    table = compare_table([old, old_point])
    head, _, row, *_ = table.splitlines()
    assert "ECE" not in head and "[" not in row and "0.7412" in row and "0.5800" in row
    assert "95% intervals" not in table and "o.tflite: prior shift 0.5" in table
    # mixed old and new files through the CLI: exit 0, intervals only where present
    (tmp_path / "old.json").write_text(json.dumps([old]))
    (tmp_path / "new.json").write_text(json.dumps([_record("new.tflite")]))
    result = CliRunner().invoke(main, ["bench", "--compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"),
                                       "--no-plot"])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "0.7412" in next(x for x in lines if x.startswith("old.tflite"))
    assert "0.741 [0.72, 0.76]" in next(x for x in lines if x.startswith("new.tflite"))
    assert [r["model"] for r in load_results([tmp_path / "old.json", tmp_path / "new.json"])] == [
        "old.tflite",
        "new.tflite",
    ]


def test_several_classes_of_concern_name_theirs():
    table = compare_table([_record("a.tflite"), _record("b.tflite", concern="bcc")])
    head, _, a, b = table.splitlines()[:4]
    assert "concern.sens" in head and "mel 0.580 [0.43, 0.72]" in a and "bcc 0.580 [0.43, 0.72]" in b


def test_out_is_checked_before_anything_prints(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([_record("a.tflite")]))
    (tmp_path / "file").write_text("x")
    for out, blocker in ((tmp_path / "file", "file"), (tmp_path / "file" / "p.png", "file"),
                         (tmp_path / "file" / "sub", "file")):  # fmt: skip
        r = CliRunner().invoke(main, ["bench", "--compare", str(tmp_path / "a.json"), "--out", str(out)])
        assert r.exit_code == 2, r.output
        assert len(r.output.strip().splitlines()) == 1 and "--out" in r.output and blocker in r.output, r.output
        assert "Traceback" not in r.output and "a.tflite" not in r.output  # no table before the error
    (tmp_path / "dir.png").mkdir()
    r = CliRunner().invoke(main, ["bench", "--compare", str(tmp_path / "a.json"), "--out", str(tmp_path / "dir.png")])
    assert r.exit_code == 2 and "is a folder" in r.output and "a.tflite" not in r.output, r.output


def test_plot_write_failure_is_one_line(tmp_path):
    pytest.importorskip("matplotlib")
    from kdtool.bench.pareto_plot import plot_pareto
    from kdtool.errors import InputError

    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        plot_pareto([_record("a.tflite")], tmp_path / "file" / "pareto.png")
