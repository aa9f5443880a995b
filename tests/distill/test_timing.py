"""Where a run's time goes: epoch seconds survive a resume, phases replace themselves, the table adds up."""

from __future__ import annotations

import math

from kdtool.distill.checkpoint import read_epoch_log
from kdtool.distill.timing import TRAINING_PASSES, fit_seconds, phase_lines, record_phase


class _Run:
    def __init__(self):
        self.doc = {}


def test_training_seconds_count_epochs_run_before_a_resume(tmp_path):
    log = tmp_path / "epochs.csv"  # epochs 1-2 in a killed process, 3 after the resume
    log.write_text("epoch,loss,epoch_seconds\n1,0.9,10.5\n2,0.8,11.0\n3,0.7,9.5\n")
    assert fit_seconds(read_epoch_log(log), fallback=9.5) == (31.0, True)
    old = tmp_path / "old.csv"  # epoch 1 run by a kdtool that kept no epoch seconds: fall back to the wall time
    old.write_text("epoch,loss\n1,0.9\n")
    old.write_text(old.read_text() + "2,0.8\n")
    history = read_epoch_log(old)
    history["epoch_seconds"] = [math.nan, 3.0]
    assert fit_seconds(history, fallback=3.5) == (3.5, False)
    history["epoch_seconds"] = [3.0]  # a teacher's head phase timed by no one: one epoch short
    assert fit_seconds(history, fallback=3.5) == (3.5, False)


def test_a_phase_recorded_again_replaces_itself_and_rates_follow_the_counts():
    run = _Run()
    record_phase(run, "train", "s", 100.0, images=1000, macs_per_image=10**6, passes=TRAINING_PASSES)
    entry = record_phase(run, "train", "s", 50.0, images=1000, macs_per_image=10**6, passes=TRAINING_PASSES)
    record_phase(run, "summary", "", 50.0)
    assert [p["phase"] for p in run.doc["phases"]] == ["train", "summary"]
    assert entry["images_per_second"] == 20.0 and entry["gmacs_per_second"] == 0.06
    assert run.doc["phases"][1]["images_per_second"] is None and run.doc["phases"][1]["gmacs_per_second"] is None
    lines = phase_lines(run.doc["phases"])
    assert lines[2].split()[2:4] == ["50.0", "50%"] and lines[-1].split() == ["total", "100.0"]
    lines = phase_lines(run.doc["phases"], total_seconds=200.0)  # the rest of the wall time is "other"
    assert lines[-2].split() == ["other", "100.0", "50%"] and lines[-1].split() == ["total", "200.0"]
    assert phase_lines(run.doc["phases"], total_seconds=100.5)[-2].split()[0] == "summary"  # under a second
    assert phase_lines([]) == []
