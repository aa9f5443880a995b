"""benchmarks/run.py --resume: a full run continued by a later process (sections faked, no training)."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark

pytest.importorskip("tensorflow")


@pytest.fixture()
def bench(monkeypatch):
    module = load_benchmark("run")
    calls = []

    def fake_kd(self):
        calls.append("kd")
        self.results["kd_marker"] = 1

    def fake_compression(self):
        calls.append(("compression", str(self.seed0_run())))

    monkeypatch.setattr(module.Harness, "section_kd", fake_kd)
    monkeypatch.setattr(module.Harness, "section_compression", fake_compression)
    return module, calls


def test_resume_keeps_finished_sections_and_finds_the_earlier_kd_run(bench, tmp_path, capsys):
    module, calls = bench
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
    assert "over 3 processes (--resume; sections per process: kd; compression; compression)" in \
        (tmp_path / "results.md").read_text()

    with pytest.raises(SystemExit, match="other settings"):
        module.main([*common, "--resume", "--epochs", "7"])


def test_resume_needs_a_work_folder(bench, capsys):
    module, _ = bench
    with pytest.raises(SystemExit) as exc:
        module.main(["--quick", "--resume"])
    assert exc.value.code == 2 and "--resume needs --work" in capsys.readouterr().err


def test_cost_goal_is_judged_over_the_runs_own_epochs():
    """A full run's 4x goal uses its 120 student epochs; results written before (20 epochs) still render."""
    from conftest import ROOT

    module = load_benchmark("run")
    full = json.loads((ROOT / "benchmarks" / "results_full.json").read_text())
    goals = full["distill_cost"]["goals"]
    n = full["settings"]["epochs"]
    assert n == 120 and goals["full_run_epochs"] == n
    recipe = full["distill_cost"]["recipes"][full["distill_cost"]["goal_recipe"]]
    assert goals["full_run_online_over_cached_large"] == recipe["full_run"][str(n)]["large"]["online_over_cached"]
    text = module.render_markdown(full)
    assert f"over a {n}-epoch run (the run's student epochs) at least 4x faster" in text
    assert f"({goals['full_run_online_over_cached_large']:.2f}x)." in text
    quick = json.loads((ROOT / "benchmarks" / "results.json").read_text())  # a quick run: 4 student epochs
    goals = quick["distill_cost"]["goals"]
    assert goals["full_run_epochs"] == quick["settings"]["epochs"] == 4
    assert "over a 4-epoch run (the run's student epochs) at least 4x faster" in module.render_markdown(quick)
    # results written before full_run_epochs existed judged the goal at 20 epochs under another key
    goals["full_run_20_epochs_online_over_cached_large"] = 1.92
    del goals["full_run_epochs"], goals["full_run_online_over_cached_large"]
    text = module.render_markdown(quick)
    assert "over a 20-epoch run (the run's student epochs)" in text and "(1.92x)." in text


def test_results_doc_quotes_the_command_so_it_can_be_pasted(monkeypatch):
    module = load_benchmark("run")
    monkeypatch.setattr(module, "machine_facts", lambda: {})
    monkeypatch.setattr(module, "machine_line", lambda facts: "m")
    doc = module.results_doc("x.py", ["--runs", "a,b", "--adopts", "kdtool export --majority-offset 1"], "/d", [], 0.0)
    assert doc["command"] == "python benchmarks/x.py --runs a,b --adopts 'kdtool export --majority-offset 1'"
    assert module.results_doc("x.py", [], "/d", [], 0.0)["command"] == "python benchmarks/x.py"
