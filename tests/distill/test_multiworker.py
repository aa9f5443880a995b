"""`kdtool distill --strategy multiworker`: TF_CONFIG checks (fast), then two local CPU workers (slow).

The slow tests start real `python -m kdtool`-style processes on free localhost ports, one two-worker
job at a time, each with a timeout so that a hang fails instead of blocking CI.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, write_fdata

from kdtool.cli import main
from kdtool.distill.cluster import (
    Cluster,
    cluster_from_env,
    cluster_timeout,
    config_digest,
    digests_agree,
    parse_tf_config,
)
from kdtool.errors import InputError

needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs the [train] extra")


def tf_config(workers: list[str], index: int, task: str = "worker", chief: list[str] | None = None) -> str:
    cluster = {"worker": workers, **({"chief": chief} if chief else {})}
    return json.dumps({"cluster": cluster, "task": {"type": task, "index": index}})


# ---------------------------------------------------------------- TF_CONFIG, fast


@pytest.mark.parametrize(
    "text,message",
    [
        ("{not json", "TF_CONFIG: not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"task": {"type": "worker", "index": 0}}', "no 'cluster'"),
        ('{"cluster": {"worker": ["a:1"]}}', "no 'task'"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "task type 'ps' does not train"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}', "'evaluator' does not train"),
        ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "worker 2 is outside"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": -1}}', "worker -1 is outside"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "chief has 0 tasks"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}', "index must be an integer"),
        ('{"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker", "index": 0}}', "is not host:port"),
        ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}', "must be a list"),
        ('{"cluster": {"chief": ["a:1", "b:1"]}, "task": {"type": "chief", "index": 0}}', "at most one chief"),
    ],
)
def test_bad_tf_config_is_one_line(text, message):
    with pytest.raises(InputError) as err:
        parse_tf_config(text)
    line = err.value.format_message()
    assert message in line and "\n" not in line


def test_the_chief_is_task_chief_or_worker_0_without_one():
    # tensorflow.python.distribute.multi_worker_util.is_chief: the same rule
    assert parse_tf_config(tf_config(["a:1", "b:1"], 0)).is_chief
    assert not parse_tf_config(tf_config(["a:1", "b:1"], 1)).is_chief
    with_chief = parse_tf_config(tf_config(["a:1"], 0, chief=["c:1"]))
    assert not with_chief.is_chief and with_chief.num_workers == 2
    assert parse_tf_config(tf_config(["a:1"], 0, task="chief", chief=["c:1"])).is_chief
    assert Cluster({"worker": ["a:1", "b:2"]}, "worker", 1).describe() == "worker 1 of 2 (b:2)"


def test_strategy_and_tf_config_must_agree():
    two = tf_config(["a:1", "b:1"], 0)
    assert cluster_from_env("multiworker", {"TF_CONFIG": two}).num_workers == 2
    with pytest.raises(InputError, match="needs the TF_CONFIG environment variable"):
        cluster_from_env("multiworker", {"TF_CONFIG": "  "})
    # several tasks without multiworker: each would train alone into the same folder
    with pytest.raises(InputError, match="names 2 training tasks but --strategy is auto"):
        cluster_from_env("auto", {"TF_CONFIG": two})
    # a one-task TF_CONFIG (what Vertex AI sets for a single replica) is ignored
    assert cluster_from_env("mirrored", {"TF_CONFIG": tf_config(["a:1"], 0)}) is None
    assert cluster_from_env("auto", {}) is None


def test_cluster_timeout_reads_the_environment():
    assert cluster_timeout({}) == 300.0 and cluster_timeout({"KDTOOL_CLUSTER_TIMEOUT": "2.5"}) == 2.5
    for bad in ("0", "-3", "soon"):
        with pytest.raises(InputError, match="KDTOOL_CLUSTER_TIMEOUT must be a positive number"):
            cluster_timeout({"KDTOOL_CLUSTER_TIMEOUT": bad})


def test_config_digest_ignores_paths_but_not_settings_data_or_fresh():
    cfg = {"epochs": 2, "teachers": ["vgg16"], "out": "/a", "data": "/d"}
    base = config_digest(cfg, "fp", False)
    assert base == config_digest({**cfg, "out": "/mnt/b", "data": "/local/d"}, "fp", False)
    assert base != config_digest({**cfg, "epochs": 3}, "fp", False)
    assert base != config_digest(cfg, "other data", False)
    assert base != config_digest(cfg, "fp", True)


def test_digests_agree_only_when_every_replica_holds_the_same_bytes():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, 32).astype(float), rng.integers(0, 256, 32).astype(float)
    for held in ([a, a], [a, a, a, a], [a]):
        assert digests_agree(sum(held), sum(h * h for h in held), len(held))
    for held in ([a, b], [a, a, a, b]):
        assert not digests_agree(sum(held), sum(h * h for h in held), len(held))


@pytest.mark.parametrize(
    "env,extra,message",
    [
        (None, [], "--strategy multiworker needs the TF_CONFIG environment variable"),
        ("{bad", [], "TF_CONFIG: not valid JSON"),
        (tf_config(["a:1", "b:1"], 5), [], "TF_CONFIG: task worker 5 is outside the cluster"),
        (tf_config(["a:1", "b:1"], 1), ["--calibration-folds", "2"], "--calibration-folds does not run with"),
    ],
)
def test_distill_refuses_a_bad_cluster_in_one_line_before_tensorflow(tmp_path, monkeypatch, env, extra, message):
    data = write_fdata(tmp_path / "FData")
    if env is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", env)
    args = ["distill", "--data", str(data), "--out", str(tmp_path / "o"), "--strategy", "multiworker", *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_distill_refuses_a_cluster_tf_config_without_multiworker(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config(["a:1", "b:1"], 0))
    result = CliRunner().invoke(main, ["distill", "--data", str(write_fdata(tmp_path / "F")), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "use --strategy multiworker" in result.output, result.output


# ---------------------------------------------------------------- two local CPU workers, slow

#: a tiny recipe: the tinynet teacher of conftest (registered in each process), 8 px, two epochs
RECIPE = ["--teachers", "tinynet", "--image-size", "8", "--weights", "none", "--batch-size", "16"]
RECIPE += ["--teacher-epochs", "1", "--student-filters", "8,16", "--student-dense", "16", "--no-augment"]
#: each worker process: registers tinynet, then runs the CLI with argv[1:]
LAUNCH = (
    "import sys; sys.path.insert(0, {tests!r}); import conftest; "
    "from kdtool.distill.teachers import TEACHERS, TeacherSpec; "
    "TEACHERS['tinynet'] = TeacherSpec(conftest.tiny_backbone, 'torch', 8, 'test stand-in'); "
    "from kdtool.cli import main; main(sys.argv[1:])"
).format(tests=str(ROOT / "tests"))


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_workers(tmp_path: Path, args: list[str], extra: dict | None = None, log: str = "w", only=(0, 1)):
    """Start workers of a two-worker job (worker 0 is the chief; ``only`` those), each with its own TMPDIR.

    ``extra``: ``{i: {env}}`` and ``{"args<i>": [args]}`` for worker i alone.
    """
    addresses = [f"localhost:{p}" for p in free_ports(2)]
    procs = []
    for i in only:
        scratch = tmp_path / f"tmp{i}"
        scratch.mkdir(exist_ok=True)
        env = {**os.environ, "TF_CONFIG": tf_config(addresses, i), "TMPDIR": str(scratch), "CUDA_VISIBLE_DEVICES": ""}
        env.update((extra or {}).get(i, {}))
        out = open(tmp_path / f"{log}{i}.log", "w")
        cmd = [sys.executable, "-c", LAUNCH, *args, *(extra or {}).get(f"args{i}", [])]
        procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT))
    return procs


def wait_all(procs, timeout: float = 240) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a worker hung past its timeout")
    return codes


def history(folder: Path, name: str) -> dict[str, list[float]]:
    with open(folder / name / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch"}


@needs_tf
@pytest.mark.slow
def test_two_workers_train_one_run_the_chief_alone_writes_and_it_matches_one_worker(tmp_path):
    data = write_fdata(tmp_path / "FData", n=(64, 24, 24))
    two, one = tmp_path / "two", tmp_path / "one"
    args = ["distill", "--data", str(data), "--epochs", "2", *RECIPE]
    codes = wait_all(start_workers(tmp_path, [*args, "--out", str(two), "--strategy", "multiworker"]))
    logs = [(tmp_path / f"w{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "worker 1 of 2" in logs[1] and "done; the chief wrote" in logs[1]
    doc = json.loads((two / "run.json").read_text())
    assert doc["status"] == "FINISHED" and doc["cluster"] == {"workers": 2, "replicas": 2}
    assert sorted(m["name"] for m in doc["models"]) == ["student_alone", "student_tinynet", "teacher_tinynet"]
    assert not list((two / ".backup").glob("*"))  # each model's backups went once it was saved
    assert not any((tmp_path / "tmp1").iterdir())  # the worker's own backups went with it
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCH, *args, "--out", str(one)], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # the teacher has no batch normalisation: two workers averaging their halves of each batch's gradient
    # train it as one worker does on the whole batch (up to rounding and other dropout masks)
    got, want = history(two, "teacher_tinynet"), history(one, "teacher_tinynet")
    np.testing.assert_allclose(got["val_loss"], want["val_loss"], rtol=1e-2)
    # the students normalise each worker's half batch on its own (per-replica batch norm): close, not equal
    rec = {r: {m["name"]: m for m in json.loads((r / "run.json").read_text())["models"]} for r in (two, one)}
    for name in ("student_alone", "student_tinynet"):
        got, want = history(two, name), history(one, name)
        np.testing.assert_allclose(got["val_ce"], want["val_ce"], rtol=2e-2)
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=0.1)  # the KD loss is not counted twice
        assert abs(rec[two][name]["val"]["balanced_accuracy"] - rec[one][name]["val"]["balanced_accuracy"]) <= 0.2
        assert np.isfinite(history(two, name)["loss"]).all()


@needs_tf
@pytest.mark.slow
def test_a_worker_killed_mid_run_and_restarted_resumes_from_the_last_epoch(tmp_path):
    data = write_fdata(tmp_path / "FData", n=(64, 24, 24))
    out = tmp_path / "run"
    args = ["distill", "--data", str(data), "--out", str(out), "--epochs", "5", *RECIPE, "--teachers", ""]
    args += ["--strategy", "multiworker"]
    chief, worker = start_workers(tmp_path, args, log="first")
    state = out / ".backup" / "student_alone" / "state.json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and chief.poll() is None:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 2:
            break
        time.sleep(0.2)
    else:
        worker.kill()
        chief.kill()
        pytest.fail("the chief never backed up epoch 2: " + (tmp_path / "first0.log").read_text()[-2000:])
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert wait_all([chief], timeout=120) == [1]  # the coordination service notices the missing worker
    first = (tmp_path / "first0.log").read_text()
    assert "lost contact with a worker mid-training" in first and "Traceback" not in first, first[-2000:]
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "FAILED" and doc["models"] == []
    kept = json.loads(state.read_text())["epoch"]
    assert 2 <= kept < 5

    assert wait_all(start_workers(tmp_path, args, log="again")) == [0, 0]
    for i in range(2):
        assert f"resuming student_alone after epoch {kept}/5" in (tmp_path / f"again{i}.log").read_text()
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "FINISHED" and [m["name"] for m in doc["models"]] == ["student_alone"]
    assert doc["models"][0]["epochs"] == 5 and len(history(out, "student_alone")["loss"]) == 5


@needs_tf
@pytest.mark.slow
def test_workers_that_disagree_or_wait_alone_stop_in_one_line(tmp_path):
    data = write_fdata(tmp_path / "FData")
    args = ["distill", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", *RECIPE]
    args += ["--strategy", "multiworker"]
    codes = wait_all(start_workers(tmp_path, args, extra={"args1": ["--epochs", "2"]}), timeout=120)
    assert codes == [2, 2]
    for i in range(2):
        last = (tmp_path / f"w{i}.log").read_text().strip().splitlines()[-1]
        assert f"worker {i} of 2" in last and "the workers run different commands" in last
    # a worker whose peer never comes gives up after KDTOOL_CLUSTER_TIMEOUT
    lone = start_workers(tmp_path, args, extra={1: {"KDTOOL_CLUSTER_TIMEOUT": "3"}}, log="lone", only=(1,))
    started = time.monotonic()
    assert wait_all(lone, timeout=90) == [1]
    last = (tmp_path / "lone1.log").read_text().strip().splitlines()[-1]
    assert "could not reach the other workers" in last and "within 3 s" in last
    assert time.monotonic() - started < 60
