"""benchmarks/run.py and its modules: resuming, the cost goals, the results page, and one real tiny run."""

from __future__ import annotations

import doctest
import importlib
import json

import pytest
from conftest import ROOT, load_benchmark, register_tinynet, write_fdata

HAM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def harness_module(name: str):
    """One of the harness's own modules (benchmarks/ is put on sys.path by loading run.py)."""
    load_benchmark("run")
    return importlib.import_module(name)


@pytest.fixture()
def faked(monkeypatch):
    """run.py with the kd and compression sections replaced by stand-ins that record their calls."""
    pytest.importorskip("tensorflow")  # main() loads TensorFlow as a real run does
    module = load_benchmark("run")
    sections = importlib.import_module("sections")
    calls = []

    def fake_kd(h):
        calls.append("kd")
        h.results["kd_marker"] = 1

    def fake_compression(h):
        calls.append(("compression", str(h.seed0_run())))

    monkeypatch.setattr(sections, "kd_gain", fake_kd)
    monkeypatch.setattr(sections, "compression", fake_compression)
    return module, calls


def test_resume_keeps_finished_sections_and_finds_the_earlier_kd_run(faked, tmp_path):
    module, calls = faked
    work, out = tmp_path / "work", tmp_path / "results.json"
    common = ["--quick", "--work", str(work), "--json", str(out), "--md", str(tmp_path / "results.md")]
    assert module.main([*common, "--sections", "kd"]) == 0
    first = json.loads(out.read_text())
    assert calls == ["kd"] and set(first["section_seconds"]) == {"kd"}

    with pytest.raises(SystemExit, match="need the kd section"):  # no finished seed-0 run in --work yet
        module.main([*common, "--sections", "kd,compression", "--resume"])
    (work / "kd" / "seed0").mkdir(parents=True)
    (work / "kd" / "seed0" / "run.json").write_text(json.dumps({"status": "FINISHED"}))
    calls.clear()
    assert module.main([*common, "--sections", "kd,compression", "--resume"]) == 0
    assert calls == [("compression", str(work / "kd" / "seed0"))]  # kd not run again
    doc = json.loads(out.read_text())
    assert set(doc["section_seconds"]) == {"kd", "compression"} and doc["kd_marker"] == 1
    # the process that stopped on the missing run is on record too: it spent time on this run
    assert [p["sections"] for p in doc["processes"]] == [["kd"], ["compression"], ["compression"]]
    assert doc["started"] == first["started"] and doc["wall_seconds"] >= first["wall_seconds"]
    assert (
        "over 3 processes (--resume; sections per process: kd; compression; compression)"
        in (tmp_path / "results.md").read_text()
    )

    with pytest.raises(SystemExit, match="other settings"):
        module.main([*common, "--resume", "--epochs", "7"])


def test_bad_options_exit_2_with_one_line(capsys):
    module = load_benchmark("run")
    with pytest.raises(SystemExit) as exc:
        module.main(["--quick", "--resume"])
    assert exc.value.code == 2 and "--resume needs --work" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        module.main(["--quick", "--sections", "kd,speed"])
    assert exc.value.code == 2 and "unknown section(s) ['speed']" in capsys.readouterr().err


def test_plan_prints_the_scope_without_training(tmp_path, capsys):
    module = load_benchmark("run")
    assert module.main(["--plan", "--quick", "--seeds", "3", "--json", str(tmp_path / "none.json")]) == 0
    out = capsys.readouterr().out
    assert "1 kd: 1 seed(s) [3] x [1 teacher(s) efficientnet_lite0 fine-tuned 1 epoch(s) at 32 px" in out
    assert "rough estimate" not in out and not (tmp_path / "none.json").exists()  # nothing to estimate from


def _cost_record(cost, run_epochs: int) -> dict:
    """A distill_cost record as cost.distill_cost writes it, from made-up epoch and caching times."""

    def ep(s):
        return {"train_seconds": s, "epoch_seconds": s, "first_epoch_seconds": 2 * s}

    epochs = {"student_alone": ep(1.0), "cached_kd": ep(1.0), "online_kd_small": ep(1.2), "online_kd_large": ep(2.5)}
    caching = {
        lb: {
            "teacher": "efficientnet_lite0",
            "image_size": size,
            "params": 3_421_991,
            "macs_per_image": 7.8e6,
            "images": 1000,
            "seconds": 5.0,
            "first_call_seconds": 6.0,
            "ms_per_image": 5.0,
            "full_data_seconds_estimate": 5.0,
        }
        for lb, size in (("small", 32), ("large", 96))
    }
    recipe = {
        "augment": False,
        "views": None,
        "balance": "logit-adjust",
        "make_views_seconds": 0.0,
        "epochs": epochs,
        "caching": caching,
        **cost.cost_ratios(epochs, caching, 0.0, run_epochs),
    }
    return {
        "fraction_of_train": 1.0,
        "train_images": 1000,
        "val_images": 200,
        "batch_size": 64,
        "full_data_scale": 1.0,
        "rounds_timed": 2,
        "recipes": {"plain": recipe},
        "goal_recipe": "plain",
        "goals": cost.cost_goals(recipe, run_epochs),
    }


def test_cost_goal_is_judged_over_the_runs_own_epochs():
    """A 120-epoch run: caching (5 s) + 120 cached epochs (1 s) against 120 online ones (2.5 s) is 2.4x, not 2.0x."""
    cost, render = harness_module("cost"), harness_module("render")
    dc = _cost_record(cost, 120)
    assert set(dc["recipes"]["plain"]["full_run"]) == {"20", "120"}  # 20 epochs listed for reference
    assert dc["recipes"]["plain"]["full_run"]["20"]["large"]["online_over_cached"] == pytest.approx(2.0)
    assert dc["goals"]["full_run_online_over_cached_large"] == pytest.approx(2.4)
    assert (
        dc["goals"]["cached_epoch_within_1.1x_of_alone"]
        and not dc["goals"]["full_run_at_least_4x_faster_than_online_large"]
    )
    page = render.render_markdown(
        {
            "command": "python benchmarks/run.py",
            "started": "2026-12-06T06:20:00",
            "data": "/d",
            "mode": "full",
            "machine": {},
            "distill_cost": dc,
        }
    )
    assert (
        "over a 120-epoch run (the run's student epochs) at least 4x faster than online KD with "
        "efficientnet_lite0 @ 96 px: **not met** (2.40x)." in page
    )
    assert "| 20 | efficientnet_lite0 @ 96 px | 25.0 | 50.0 | 2.00x |" in page


def test_the_results_page_is_its_json_rendered():
    """benchmarks/results.md is what render.py makes of results.json (re-render it after changing either)."""
    render = harness_module("render")
    doc = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    assert doc["json_name"] == "results.json"
    assert render.render_markdown(doc) == (ROOT / "benchmarks" / "results.md").read_text()


@pytest.mark.parametrize("name", ["common", "machine", "sections", "cost", "render"])
def test_doctests(name):
    module = harness_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow
def test_a_tiny_full_run_writes_every_section(tmp_path, monkeypatch):
    """Every section for real, on a tiny 7-class set with a stand-in teacher: the harness runs end to end."""
    pytest.importorskip("tensorflow")
    register_tinynet(monkeypatch)
    data = write_fdata(tmp_path / "FData", n=(84, 42, 42), k=7, size=16, class_names=HAM_CLASSES)
    module = load_benchmark("run")
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    assert (
        module.main(
            [
                "--quick",
                "--data",
                str(data),
                "--work",
                str(tmp_path / "work"),
                "--seeds",
                "0",
                "--teachers",
                "tinynet",
                "--cost-teacher",
                "tinynet",
                "--epochs",
                "1",
                "--json",
                str(out),
                "--md",
                str(md),
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert set(doc["section_seconds"]) == {"kd", "cost", "quant", "latency", "compression", "scaling"}
    assert set(doc["kd_gain"]["models"]) == {"student_alone", "teacher_tinynet", "student_tinynet"}
    assert {"float32", "int8"} <= set(doc["quantization"]["modes"])
    assert doc["inference"]["latency"]["tflite_int8_1t"]["median_ms"] > 0
    assert [p["train_images"] for p in doc["scaling"]["points"]] == [21, 42, 84]
    page = md.read_text()
    for heading in (
        "## 1. KD gain",
        "## 2. Distillation cost",
        "## 3. Quantization",
        "## 4. Inference latency",
        "## 5. Compression",
        "## 6. Pipeline wall time and scaling",
    ):
        assert heading in page
