"""kdtool bench --compare's frontiers (kdtool.bench.compare, kdtool.bench.pareto_plot): per device, balanced
accuracy against median latency and against size, the pick per latency budget, the fallback to accuracy, emulated
devices as their own group, the table's marks and pareto.png. Records are tiny dicts written by hand (the keys
kdtool.bench.report documents); no TensorFlow."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from kdtool.bench import compare, pareto_plot
from kdtool.bench.compare import best_within, compare_table, front_flags, frontier_lines, mark_fronts
from kdtool.cli import main


def rec(model, bacc, ms, size=100_000, host="pi", *, acc=None, emulated=False, ci=None, batch=1, threads=1):
    r = {
        "model": model, "balanced_accuracy": bacc, "accuracy": bacc + 0.1 if acc is None else acc,
        "size_bytes": size, "latency_ms": {"median": ms, "p90": None if ms is None else ms * 1.1},
        "device": {"hostname": host, "machine": "aarch64", "cpu_model": "Cortex-A72"}, "emulated": emulated,
        "batch": batch, "threads": threads,
    }  # fmt: skip
    if ci is not None:
        r["ci95"] = {"balanced_accuracy": ci}
    return r


def _row(table: str, model: str, device: str = "", emulated: bool = False) -> list[str]:
    """The cells of the first table row of ``model`` (with a trailing space to tell ``l`` from ``ls``)."""
    lines = table.splitlines()
    return next(x for x in lines if x.startswith(model) and device in x and ("[emulated]" in x) == emulated).split()


def test_frontier_is_per_device():
    # a: accurate and slow on the Pi, accurate and fast on the PC; b: less accurate, 2 ms on both.
    recs = [rec("a", 0.70, 8.0, host="pi"), rec("b", 0.60, 2.0, host="pi"),
            rec("a", 0.70, 1.0, host="pc"), rec("b", 0.60, 2.0, host="pc")]  # fmt: skip
    assert front_flags(recs, "latency") == [True, True, True, False]
    # one pool over both devices (the old behaviour) would drop b on the Pi: the PC's a dominates it
    assert compare._front_2d([(8.0, 0.7), (2.0, 0.6), (1.0, 0.7), (2.0, 0.6)]) == [False, False, True, False]
    # size does not depend on the device: same size -> the more accurate model alone on each device's front
    assert front_flags(recs, "size") == [True, False, True, False]
    assert mark_fronts(recs) == "balanced_accuracy"
    assert [(r["pareto_latency"], r["pareto_size"], r["pareto"]) for r in recs] == [
        (True, True, True), (True, False, True), (True, True, True), (False, False, False),
    ]  # fmt: skip
    lines = frontier_lines(recs)
    pi = lines.index("pi aarch64 Cortex-A72, 1 thread")
    assert lines[pi + 1] == "  by latency: b (0.600, 2.00 ms) < a (0.700, 8.00 ms)"  # in order of latency
    pc = lines.index("pc aarch64 Cortex-A72, 1 thread")
    assert lines[pc + 1] == "  by latency: a (0.700, 1.00 ms)"


def test_size_front_and_missing_values():
    recs = [rec("small", 0.60, 1.0, size=50_000), rec("big", 0.65, 1.0, size=400_000),
            rec("bloated", 0.62, 1.0, size=500_000), rec("untimed", 0.66, None, size=600_000)]  # fmt: skip
    assert front_flags(recs, "size") == [True, True, False, True]
    # untimed (--runs 0) never joins the latency front; big beats small and bloated at the same latency
    assert front_flags(recs, "latency") == [False, True, False, False]
    with pytest.raises(ValueError, match="latency"):
        front_flags(recs, "speed")
    only_untimed = frontier_lines([rec("u", 0.6, None)])
    assert "  by latency: no median latency measured" in only_untimed
    assert not any("<= " in line for line in only_untimed)  # no budgets without a latency


def test_budget_picker_fits_none_fits_and_ties():
    recs = [rec("fast", 0.55, 0.4), rec("mid", 0.62, 4.0, size=300_000), rec("mid_small", 0.62, 4.0, size=90_000),
            rec("mid_slow", 0.62, 4.5), rec("best", 0.70, 20.0), rec("untimed", 0.99, None)]  # fmt: skip
    assert best_within(recs, 1.0)["model"] == "fast"
    # three tie at 0.62: the lower latency wins, then the smaller file
    assert best_within(recs, 5.0)["model"] == "mid_small"
    assert best_within(recs, 20.0)["model"] == "best"  # a median equal to the budget fits
    assert best_within(recs, 0.3) is None
    assert best_within([dict(recs[1], model="y"), dict(recs[1], model="x")], 5.0)["model"] == "x"  # then the name
    lines = frontier_lines(recs, budgets=(0.3, 5.0))
    assert "  <= 0.3 ms: none fits (fastest: fast, 0.40 ms)" in lines
    assert "  <= 5 ms: mid_small, balanced accuracy 0.6200, median 4.00 ms, 87.9 KiB" in lines
    # the picks and their intervals below the table, one line per default budget
    recs[4]["ci95"] = {"balanced_accuracy": [0.611, 0.688]}
    table = compare_table(recs)
    assert [line.split(":")[0] for line in table.splitlines() if line.startswith("  <= ")] == [
        "  <= 1 ms", "  <= 5 ms", "  <= 20 ms"
    ]  # fmt: skip
    assert "  <= 20 ms: best, balanced accuracy 0.700 [0.61, 0.69], median 20.00 ms" in table


def test_fallback_to_accuracy_when_a_record_lacks_balanced_accuracy():
    # balanced accuracy and accuracy rank these two oppositely on the same latency
    recs = [rec("x", 0.70, 1.0, acc=0.70), rec("y", 0.60, 1.0, acc=0.80)]
    assert front_flags(recs, "latency") == [True, False]
    old = dict(recs[1])
    del old["balanced_accuracy"]
    mixed = [recs[0], old]
    assert compare.frontier_metric(mixed) == "accuracy"
    assert front_flags(mixed, "latency") == [False, True]
    table = compare_table(mixed)
    assert "pareto(acc)" in table.splitlines()[0]
    assert "frontiers use accuracy, not balanced accuracy: 1 result(s) lack balanced accuracy" in table
    assert "frontiers of accuracy, per device" in table
    assert "  <= 1 ms: y, accuracy 0.8000, median 1.00 ms" in table
    assert "pareto(acc)" not in compare_table(recs) and "frontiers use accuracy" not in compare_table(recs)


def test_emulated_results_are_their_own_device_relative_only():
    host = [rec("a", 0.70, 3.0), rec("b", 0.60, 1.0)]
    # under qemu on the same machine: ten times slower; pooled with the host, the host's a would dominate both
    emu = [rec("a", 0.70, 30.0, emulated=True), rec("b", 0.60, 20.0, emulated=True)]
    recs = host + emu
    assert compare.device_group(emu[0]) == "pi aarch64 Cortex-A72 [emulated], 1 thread"
    assert front_flags(recs, "latency") == [True, True, True, True]
    assert compare._front_2d([(3.0, 0.7), (1.0, 0.6), (30.0, 0.7), (20.0, 0.6)]) == [True, True, False, False]
    mark_fronts(recs)
    assert [r["pareto"] for r in recs] == [True, True, False, False]  # never for emulated results
    assert [r["pareto_latency"] for r in emu] == [True, True] and [r["pareto_size"] for r in emu] == [True, False]
    table = compare_table(recs)
    assert [_row(table, m, emulated=True)[-1] for m in ("a ", "b ")] == ["ls", "l"]  # lower case: relative only
    assert [_row(table, m)[-1] for m in ("a ", "b ")] == ["LS", "L"]
    lines = table.splitlines()
    head = lines.index("pi aarch64 Cortex-A72 [emulated], 1 thread (latency relative only)")
    assert lines[head + 1] == "  by latency: b (0.600, 20.00 ms) < a (0.700, 30.00 ms)"
    assert "  budgets: none picked, emulated latency is not the device's" in lines[head:]
    assert sum(line.startswith("  <= 1 ms") for line in lines) == 1  # the measured device only
    assert "latency relative only" in table.split("\n\n")[1]  # the notes say it too


def test_table_marks_and_batch_groups():
    recs = [rec("ls", 0.70, 1.0, size=50_000), rec("l", 0.60, 0.5, size=90_000),
            rec("s", 0.55, 3.0, size=20_000), rec("none", 0.50, 5.0, size=200_000),
            rec("ls", 0.70, 6.0, batch=8)]  # fmt: skip
    table = compare_table(recs)
    assert table.splitlines()[0].split()[-1] == "pareto"
    assert [_row(table, m)[-1] for m in ("ls ", "l ", "s ")] == ["LS", "L", "S"]
    assert _row(table, "none")[-1] == "-"  # the img/s column: no mark on a dominated result
    assert "pi aarch64 Cortex-A72, 1 thread, batch 8" in table  # a batch's latency is its own group
    assert _row(table, "ls", "batch 8")[-1] == "LS"


def test_cli_writes_the_flags_and_prints_the_frontiers(tmp_path):
    (tmp_path / "pi.json").write_text(json.dumps([rec("a.tflite", 0.7, 8.0), rec("b.tflite", 0.6, 2.0)]))
    (tmp_path / "emu.json").write_text(json.dumps([rec("a.tflite", 0.7, 80.0, emulated=True)]))
    out = tmp_path / "merged.json"
    r = CliRunner().invoke(main, ["bench", "--compare", str(tmp_path / "pi.json"), str(tmp_path / "emu.json"),
                                  "--json", str(out), "--no-plot"])  # fmt: skip
    assert r.exit_code == 0, r.output
    merged = json.loads(out.read_text())
    assert [(m["pareto_latency"], m["pareto_size"], m["pareto"]) for m in merged] == [
        (True, True, True), (True, False, True), (True, True, False),
    ]  # fmt: skip
    assert "  by latency: b.tflite (0.600, 2.00 ms) < a.tflite (0.700, 8.00 ms)" in r.output
    assert "  <= 5 ms: b.tflite, balanced accuracy 0.6000, median 2.00 ms" in r.output


def test_plot_groups_carry_the_fronts():
    recs = [rec("a.tflite", 0.7, 8.0, ci=[0.65, 0.75]), rec("b.tflite", 0.6, 2.0, size=2048),
            rec("a.tflite", 0.7, 80.0, emulated=True), rec("n.tflite", None, 3.0, acc=0.5)]  # fmt: skip
    recs[3]["balanced_accuracy"] = 0.5  # all have it: balanced accuracy stays the metric
    groups = pareto_plot.plot_groups(recs)
    assert [(g["label"], g["emulated"], len(g["points"])) for g in groups] == [
        ("pi aarch64 Cortex-A72, 1 thread", False, 3), ("pi aarch64 Cortex-A72 [emulated], 1 thread", True, 1),
    ]  # fmt: skip
    a, b, n = groups[0]["points"]
    assert a["interval"] == [0.65, 0.75] and b["interval"] is None and b["size_kib"] == 2.0
    assert (a["on_latency"], b["on_latency"], n["on_latency"]) == (True, True, False)
    assert pareto_plot.short_name("x" * 40 + ".tflite") == "x" * 11 + "~" + "x" * 10


def test_plot_is_written_atomically(tmp_path):
    pytest.importorskip("matplotlib")
    recs = [rec("a.tflite", 0.7, 8.0, ci=[0.65, 0.75]), rec("b.tflite", 0.6, 2.0),
            rec("a.tflite", 0.7, 80.0, emulated=True), rec("u.tflite", 0.65, None)]  # fmt: skip
    path, note = pareto_plot.plot_pareto(recs, tmp_path / "plots" / "pareto.png")
    assert path == tmp_path / "plots" / "pareto.png" and note == f"wrote {path}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["pareto.png"]  # no temp file left
    # no latency anywhere (--runs 0): the latency panel says so, the file is still written
    path, _ = pareto_plot.plot_pareto([rec("u.tflite", 0.65, None)], tmp_path / "u.png")
    assert path.stat().st_size > 0


def test_plot_without_matplotlib_is_one_note(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as on the light install
    path, note = pareto_plot.plot_pareto([rec("a.tflite", 0.7, 1.0)], tmp_path / "pareto.png")
    assert path is None and note.startswith("matplotlib is not installed") and "\n" not in note
    assert not (tmp_path / "pareto.png").exists()


def test_groups_split_threads_and_tta_apart():
    # same host: a val bench at 4 threads and a test bench at 1 thread are two groups, not one frontier
    val = [rec("a", 0.70, 2.0, threads=4), rec("b", 0.60, 1.0, threads=4)]
    test = [rec("a", 0.72, 8.0), rec("b", 0.65, 4.0)]
    for r in val:
        r["split"] = "val"
    for r in test:
        r["split"] = "test"
    flip = dict(val[0], model="a_flip", tta="flip", latency_ms={"median": 4.0})
    recs = val + test + [flip]
    assert compare.device_group(val[0]) == "pi aarch64 Cortex-A72, val, 4 threads"
    assert compare.device_group(test[0]) == "pi aarch64 Cortex-A72, test, 1 thread"
    assert compare.device_group(flip) == "pi aarch64 Cortex-A72, val, 4 threads, tta flip"
    assert compare.device_group(dict(val[0], tta="none")) == compare.device_group(val[0])  # none = no TTA
    # pooled (the old behaviour), val's a at 2 ms would push test's b (4 ms, 0.65) off the latency front
    assert front_flags(recs, "latency") == [True, True, True, True, True]
    lines = frontier_lines(recs, budgets=(5.0,))
    v, t = lines.index("pi aarch64 Cortex-A72, val, 4 threads"), lines.index("pi aarch64 Cortex-A72, test, 1 thread")
    assert lines[v + 3] == "  <= 5 ms: a, balanced accuracy on val 0.7000, median 2.00 ms, 97.7 KiB"
    assert lines[t + 3] == "  <= 5 ms: b, balanced accuracy on test 0.6500, median 4.00 ms, 97.7 KiB"  # not val's a
    notes = [line for line in lines if "--split val" in line]
    assert len(notes) == 1 and lines.index(notes[0]) == t + 4 and "docs/evaluation.md" in notes[0]
    assert "tta flip" in lines[-4]  # its own group
