"""`kdtool distill` through click's CliRunner: its options and --config files, then end to end on tiny data,
plus the data commands."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, TINY, register_tinynet, tiny_backbone, write_fdata

from kdtool.cli import main
from kdtool.distill.cli import config_from, distill_command
from kdtool.distill.config import DEFAULTS, LIST_FIELDS, DistillConfig, list_to_text

needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs the [train] extra")
# the tests that train models (tiny ones, still seconds to minutes each on 2 cores) are marked slow
#: DistillConfig options of `kdtool distill` are named after its fields; these are not fields
NOT_FIELDS = ("config", "list_teachers", "list_students", "fresh")


def resolved(*args: str) -> DistillConfig:
    """The DistillConfig `kdtool distill ARGS` would run, without running it."""
    ctx = distill_command.make_context("distill", list(args))
    options = {k: v for k, v in ctx.params.items() if k not in NOT_FIELDS}
    return config_from(ctx, ctx.params["config"], options)


def one_line_error(args: list[str]) -> str:
    """Run `kdtool ARGS`, check it failed with exit code 2 and one line, and return that line."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output, result.output
    return result.output.strip()


def test_every_field_is_an_option_whose_default_is_the_dataclass_default():
    options = {p.name: p for p in distill_command.params if p.name not in NOT_FIELDS and p.name != "help"}
    assert set(options) == {f.name for f in dataclasses.fields(DistillConfig)}
    for name, option in options.items():
        want = getattr(DEFAULTS, name)
        assert option.default == (list_to_text(want) if name in LIST_FIELDS else want), name
        assert option.show_default, name
    assert resolved() == DistillConfig()  # nothing given: every value is the dataclass's
    assert DEFAULTS.epochs == 120 and "[default: 120]" in CliRunner().invoke(main, ["distill", "--help"]).output


def test_options_sit_in_six_groups():
    groups = {g.title: [p.name for p in g.options] for g in distill_command.option_groups}
    assert list(groups) == ["Data", "Teachers", "Student", "Distillation", "Schedule", "Runtime"]
    assert {"epochs", "select_best", "patience"} <= set(groups["Schedule"])
    assert {"alpha", "temperature", "temperatures", "alphas"} <= set(groups["Distillation"])
    grouped = [name for names in groups.values() for name in names]
    assert sorted(grouped) == sorted(p.name for p in distill_command.params)  # every option once, none left over


def test_list_options_convert_between_text_and_the_dataclass():
    cfg = resolved(
        "--teachers",
        "VGG16, resnet50,vgg16",
        "--student-filters",
        "8,16",
        "--sweep-temperatures",
        "1,4",
        "--sweep-alphas",
        "0.5",
    )
    assert (cfg.teachers, cfg.student_filters, cfg.temperatures, cfg.alphas) == (
        ["vgg16", "resnet50"],
        (8, 16),
        (1.0, 4.0),
        (0.5,),
    )
    assert resolved("--teachers", "").teachers == []
    assert "--student-filters needs positive integers" in one_line_error(["distill", "--student-filters", "8,0"])


def test_ema_is_removed():
    assert "ema" not in {f.name for f in dataclasses.fields(DistillConfig)}
    result = CliRunner().invoke(main, ["distill", "--ema", "0.9"])
    assert result.exit_code == 2 and "No such option '--ema'" in result.output.replace(": --ema", " '--ema'")


def write(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


def test_toml_recipe_sets_the_options_it_names(tmp_path):
    recipe = write(
        tmp_path / "recipe.toml",
        """
        # keys: option names without dashes, or the field names run.json records
        teachers = ["vgg16", "resnet50"]
        student-filters = [8, 16]
        sweep-temperatures = [1, 4]
        alphas = [0.25]
        epochs = 3
        learning_rate = 1          # an integer where a number is expected
        select-best = true
        patience = 2
        balance = "weights"
        teacher_finetune_learning_rate = 1e-4
    """,
    )
    want = DistillConfig(
        teachers=["vgg16", "resnet50"],
        student_filters=(8, 16),
        temperatures=(1.0, 4.0),
        alphas=(0.25,),
        epochs=3,
        learning_rate=1.0,
        select_best=True,
        patience=2,
        balance="weights",
        teacher_finetune_learning_rate=1e-4,
    )
    assert resolved("--config", str(recipe)) == want


def test_the_recipe_in_the_help_is_a_valid_recipe(tmp_path):
    block = distill_command.help.split("A recipe.toml")[1].split("\n", 1)[1]
    recipe = write(tmp_path / "recipe.toml", block)
    cfg = resolved("--config", str(recipe))
    assert (cfg.teachers, cfg.student_filters, cfg.epochs, cfg.select_best) == (
        ["efficientnet_lite0", "vgg16"],
        (24, 40, 80),
        60,
        True,
    )


def test_the_command_line_overrides_the_file(tmp_path):
    recipe = write(
        tmp_path / "recipe.toml",
        """
        epochs = 3
        alpha = 0.2
        out = "from-file"
        augment = false
    """,
    )
    cfg = resolved("--config", str(recipe), "--epochs", "120", "--out", "from-cli")
    # given on the command line wins, even at the default value; what it does not give comes from the file
    assert (cfg.epochs, cfg.out, cfg.alpha, cfg.augment) == (120, "from-cli", 0.2, False)
    assert resolved("--config", str(recipe), "--augment").augment is True
    assert resolved("--config", str(recipe)).epochs == 3


def run_json(path, config: dict, **extra):
    """A run.json as `kdtool distill` writes it: the config under "config", beside the run's other records."""
    path.write_text(json.dumps({"status": "FINISHED", "config": config, "models": [], "data": {}, **extra}))
    return path


def test_run_json_replays_its_config(tmp_path):
    cfg = DistillConfig(
        teachers=["vgg16"],
        student_filters=(8, 16),
        temperatures=(1.0, 2.0),
        epochs=7,
        select_best=True,
        patience=3,
        teacher_finetune_learning_rate=None,
        out="models",
    )
    doc = run_json(tmp_path / "run.json", json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert resolved("--config", str(doc)) == cfg
    assert resolved("--config", str(doc), "--out", "other") == dataclasses.replace(cfg, out="other")


def test_an_older_run_json_replays_with_the_settings_it_ran_with(tmp_path):
    config = dataclasses.asdict(DistillConfig())
    del config["lr_schedule"], config["student_convs"]  # written before those options existed
    config["ema"] = 0.0  # written while --ema existed, off
    doc = run_json(tmp_path / "run.json", config)
    cfg = resolved("--config", str(doc))
    assert (cfg.lr_schedule, cfg.student_convs) == ("constant", 1)
    assert resolved("--config", str(doc), "--lr-schedule", "cosine").lr_schedule == "cosine"
    config["ema"] = 0.999
    line = one_line_error(["distill", "--config", str(run_json(tmp_path / "ema.json", config))])
    assert "ema.json: ema = 0.999 records --ema, which kdtool no longer has" in line


@pytest.mark.parametrize(
    "text,message",
    [
        ("epoch = 3", "unknown key 'epoch' (did you mean 'epochs'?)"),
        ("[distill]\nepochs = 3", "unknown key 'distill'"),
        ('epochs = "3"', "epochs must be an integer, got '3'"),
        ("epochs = 3.0", "epochs must be an integer, got 3.0"),
        ("alpha = true", "alpha must be a number, got True"),
        ('teachers = "vgg16"', "teachers must be a list of strings, got 'vgg16'"),
        ('student_filters = [8, "16"]', "student_filters must be a list of integers"),
        ("student-filters = [8, 0]", "student-filters: --student-filters needs positive integers"),
        ('teachers = ["alexnet"]', "teachers: unknown teacher 'alexnet'; choose from:"),
        ("augment = 1", "augment must be true or false, got 1"),
        ("epochs = 3\nepochs = 4", "not valid TOML"),
        ("epochs = 3\n'epochs' = 4", "not valid TOML"),
        ("sweep-alphas = [0.5]\nalphas = [0.1]", "sweep-alphas and alphas are the same setting; keep one"),
    ],
)
def test_a_bad_recipe_is_one_line_naming_the_file_and_key(tmp_path, text, message):
    recipe = write(tmp_path / "recipe.toml", text)
    line = one_line_error(["distill", "--config", str(recipe)])
    assert line.startswith(f"Error: {recipe}: ") and message in line


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("run.json", "[1, 2]", 'not a kdtool run.json (no "config" object)'),
        ("run.json", "{", "not valid JSON"),
        ("run.json", '{"config": {"epochs": 3, "shiny": 1}}', "unknown key 'shiny'"),
        ("recipe.yaml", "epochs: 3", "--config takes a .toml recipe or a run.json"),
    ],
)
def test_a_bad_config_file_is_one_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    assert message in one_line_error(["distill", "--config", str(path)])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill")
    data = write_fdata(tmp / "FData", n=(48, 15, 15), class_names=["nv", "mel", "bcc"])
    out = tmp / "run"
    args = ["distill", "--data", str(data), "--out", str(out), "--teachers", "vgg16,resnet50", "--ensemble", *TINY]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return data, out, args, result.output


@needs_tf
@pytest.mark.slow
def test_run_writes_everything(finished_run):
    _, out, _, output = finished_run
    doc = json.loads((out / "run.json").read_text())
    assert doc["status"] == "FINISHED"
    assert doc["config"]["alpha"] == 0.5 and doc["config"]["teachers"] == ["vgg16", "resnet50"]
    assert len(doc["data"]["fingerprint"]) == 64 and doc["versions"]["tensorflow"]
    from kdtool.distill.run_folder import onednn_enabled

    assert doc["versions"]["onednn"] is onednn_enabled()  # changes the rounding: recorded beside the versions
    names = {m["name"]: m for m in doc["models"]}
    assert set(names) == {
        "student_alone",
        "teacher_vgg16",
        "student_vgg16",
        "teacher_resnet50",
        "student_resnet50",
        "student_ensemble",
    }
    assert names["student_ensemble"]["teacher"] == "teacher_vgg16+teacher_resnet50"
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    for col in (
        "name",
        "role",
        "teacher",
        "params",
        "size_bytes",
        "val_accuracy",
        "test_accuracy",
        "balanced_accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "train_seconds",
    ):
        assert col in rows[0]
    vals = [float(r["val_accuracy"]) for r in rows]
    assert vals == sorted(vals, reverse=True) and [r["rank"] for r in rows] == [str(i) for i in range(1, 7)]
    assert "student_alone" in output and "rank" not in output.splitlines()[-1]
    import keras

    import kdtool.layers  # noqa: F401 - registers the teachers' preprocessing layer

    for name, rec in names.items():
        folder = out / name
        for f in ("history.csv", "metrics.json", "curves.png", "confusion.png"):
            assert (folder / f).stat().st_size > 0, f"{name}/{f}"
        with open(folder / "history.csv") as fh:
            hist = list(csv.DictReader(fh))
        assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(hist[0])
        assert len(hist) == (1 if rec["role"] == "teacher" else 2)
        metrics = json.loads((folder / "metrics.json").read_text())
        assert set(metrics["val"]["per_class"]) == {"nv", "mel", "bcc"}
        assert "melanoma_sensitivity" in metrics["test"]
        model = keras.saving.load_model(out / rec["file"], safe_mode=True)
        assert model.count_params() == rec["params"]
        assert getattr(model, "optimizer", None) is None  # only weights, no optimizer state


@needs_tf
@pytest.mark.slow
def test_every_student_starts_from_the_same_weights_and_trains_apart(tmp_path, monkeypatch, tinynet):
    import keras

    from kdtool.distill import fit

    data = write_fdata(tmp_path / "FData", n=(48, 15, 15))
    initial, real = {}, fit.new_student

    def spy(cfg, fd, name, student=None):
        model = real(cfg, fd, name, student)
        initial[name] = model.get_weights()
        return model

    monkeypatch.setattr(fit, "new_student", spy)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        ["distill", "--data", str(data), "--out", str(out), *tinynet, "--teacher-epochs", "1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert set(initial) == {"student_alone", "student_tinynet"}
    for a, b in zip(*initial.values(), strict=True):
        np.testing.assert_array_equal(a, b)
    final = [keras.saving.load_model(out / f"{name}.keras", safe_mode=True).get_weights() for name in initial]
    assert any(not np.array_equal(a, b) for a, b in zip(*final, strict=True))  # the teacher made a difference


@needs_tf
@pytest.mark.slow
def test_rerun_skips_finished_models(finished_run):
    _, out, args, _ = finished_run
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.keras")}
    first = json.loads((out / "run.json").read_text())
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("already done, skipped") == 6
    doc = json.loads((out / "run.json").read_text())
    assert doc["first_started"] == first.get("first_started", first["started"])  # when the run began stays
    assert doc["first_command"] == first.get("first_command", first["command"])
    assert before == {p.name: p.stat().st_mtime_ns for p in out.glob("*.keras")}


@needs_tf
@pytest.mark.slow
def test_other_config_in_same_out_is_refused(finished_run):
    data, out, args, _ = finished_run
    summary = (out / "summary.csv").read_bytes()
    result = CliRunner().invoke(main, [*args, "--alpha", "0.7"])
    assert result.exit_code == 2
    assert "holds a run with a different configuration (alpha: " in result.output
    assert ", 0.7 now)" in result.output
    assert (out / "summary.csv").read_bytes() == summary


@needs_tf
@pytest.mark.slow
def test_fresh_never_resumes_an_earlier_runs_backup(finished_run, tmp_path):
    _, out, args, _ = finished_run
    other = tmp_path / "other"
    shutil.copytree(out, other)
    stale = other / ".backup" / "student_alone"
    stale.mkdir(parents=True)
    (stale / "state.json").write_text('{"epoch": 1, "weights": "epoch-1.weights.h5"}')
    (stale / "epoch-1.weights.h5").write_bytes(b"weights of another configuration")
    i = args.index("--out")
    alone = [a for a in args[i + 2 :] if a not in ("--teachers", "vgg16,resnet50", "--ensemble")]
    # the student alone is enough to see whether --fresh resumed the stale backup (teachers would only add minutes)
    result = CliRunner().invoke(
        main, [*args[: i + 1], str(other), *alone, "--teachers", "", "--fresh"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "student_alone" in result.output and "resuming student_alone" not in result.output
    assert not (stale / "state.json").exists()


@needs_tf
@pytest.mark.slow
def test_run_from_before_a_new_setting_still_matches(finished_run, tmp_path):
    """A run.json written before --lr-schedule and --student-convs existed (constant learning rate, one conv
    per block) is those settings, not another run."""
    _, out, args, _ = finished_run
    older = tmp_path / "older"
    shutil.copytree(out, older)
    doc = json.loads((older / "run.json").read_text())
    del doc["config"]["lr_schedule"], doc["config"]["student_convs"]  # as written before those options
    (older / "run.json").write_text(json.dumps(doc))
    rest = [*args[: args.index("--out")], "--out", str(older), *args[args.index("--out") + 2 :]]
    result = CliRunner().invoke(
        main, [*rest, "--lr-schedule", "constant", "--student-convs", "1"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("already done, skipped") == 6
    result = CliRunner().invoke(main, [*rest, "--student-convs", "1"])  # today's default, cosine: not that run
    assert result.exit_code == 2 and "different configuration" in result.output
    result = CliRunner().invoke(main, [*rest, "--lr-schedule", "constant"])  # today's default, 2 convs per block
    assert result.exit_code == 2 and "student_convs: 1 there, 2 now" in result.output


@needs_tf
@pytest.mark.slow
def test_a_run_that_kept_its_best_epochs_is_refused_by_the_last_epoch_default(finished_run, tmp_path):
    """Folders trained before --last-epoch became the default record select_best true: a plain re-run names
    the setting, and --select-best reuses the folder."""
    _, out, args, _ = finished_run
    older = tmp_path / "older"
    shutil.copytree(out, older)
    doc = json.loads((older / "run.json").read_text())
    assert doc["config"]["select_best"] is False  # today's default
    doc["config"]["select_best"] = True
    (older / "run.json").write_text(json.dumps(doc))
    rest = [*args[: args.index("--out")], "--out", str(older), *args[args.index("--out") + 2 :]]
    result = CliRunner().invoke(main, rest)
    assert result.exit_code == 2 and "select_best: True there, False now" in result.output
    result = CliRunner().invoke(main, [*rest, "--select-best"], catch_exceptions=False)
    assert result.exit_code == 0 and result.output.count("already done, skipped") == 6, result.output


@needs_tf
@pytest.mark.slow
def test_same_data_by_another_path_is_the_same_run(finished_run, tmp_path):
    data, out, args, _ = finished_run
    link = tmp_path / "same-data"
    link.symlink_to(data.resolve(), target_is_directory=True)
    i = args.index("--data")
    result = CliRunner().invoke(main, [*args[: i + 1], str(link), *args[i + 2 :]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("already done, skipped") == 6


@needs_tf
@pytest.mark.parametrize(
    "opt,message",
    [
        (["--alpha", "1.5"], "--alpha must lie in [0, 1]"),
        (["--temperature", "0"], "--temperature must be > 0"),
        (["--teachers", "alexnet"], "unknown teacher 'alexnet'; choose from:"),
        (["--ensemble", "--teachers", "vgg16"], "--ensemble needs at least two teachers"),
        (["--student-filters", "8,x"], "--student-filters must be comma-separated integers"),
        (["--student-convs", "0"], "Invalid value for '--student-convs'"),
        (["--kd-balance", "weights", "--balance", "weights"], "would weight the KD term twice"),
        (["--kd-balance", "sampling"], "Invalid value for '--kd-balance'"),
        (["--patience", "3"], "--patience stops on the best validation epoch: it needs --select-best"),
    ],
)
def test_bad_options(tiny_fdata, tmp_path, opt, message):
    result = CliRunner().invoke(main, ["distill", "--data", str(tiny_fdata), "--out", str(tmp_path / "o"), *opt])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@needs_tf
@pytest.mark.slow
def test_online_mode_and_mirrored_strategy_on_two_logical_cpus(tmp_path):
    data = write_fdata(tmp_path / "FData", n=(32, 12, 12))
    argv = ["distill", "--data", str(data), "--out", str(tmp_path / "run"), "--teachers", "vgg16"]
    argv += ["--teacher-logits", "online", "--strategy", "mirrored", *TINY]
    code = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from kdtool.cli import main
        main({argv!r})
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert doc["status"] == "FINISHED"
    assert {m["name"]: m.get("teacher_logits") for m in doc["models"]}["student_vgg16"] == "online"


def test_data_synthetic_command(tmp_path):
    result = CliRunner().invoke(
        main, ["data", "synthetic", "--out", str(tmp_path / "F"), "--train", "70", "--val", "14", "--test", "14"]
    )
    assert result.exit_code == 0, result.output
    from kdtool.data import load_fdata

    fd = load_fdata(tmp_path / "F")
    assert fd.image_shape == (32, 32, 3) and fd.num_classes == 7 and "mel" in fd.class_names
    assert json.loads((tmp_path / "F" / "dataset_info.json").read_text())["synthetic"] is True


def test_dermamnist_conversion_and_checksum(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 14), ("val", 7), ("test", 7)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 7).reshape(-1, 1).astype(np.uint8)
    npz = tmp_path / "dermamnist.npz"
    np.savez(npz, **arrays)
    result = CliRunner().invoke(main, ["data", "dermamnist", "--npz", str(npz), "--out", str(tmp_path / "F")])
    assert result.exit_code == 0, result.output
    from kdtool.data import load_fdata

    fd = load_fdata(tmp_path / "F")
    assert fd.image_shape == (32, 32, 3) and fd.class_names[4] == "mel"
    assert fd.labels("train").tolist() == (np.arange(14) % 7).tolist()

    from kdtool.datasets import download, md5sum
    from kdtool.errors import RuntimeFailure

    dest = tmp_path / "dl" / "d.npz"
    assert download(npz.as_uri(), dest, md5sum(npz)).read_bytes() == npz.read_bytes()
    with pytest.raises(RuntimeFailure, match="checksum mismatch"):
        download(npz.as_uri(), tmp_path / "dl" / "e.npz", "0" * 32)
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["d.npz"]  # no partial file left

    bad = tmp_path / "bad.npz"
    np.savez(bad, train_images=arrays["train_images"])
    result = CliRunner().invoke(main, ["data", "dermamnist", "--npz", str(bad), "--out", str(tmp_path / "G")])
    assert result.exit_code == 2 and "missing array 'train_labels'" in result.output


@needs_tf
@pytest.mark.slow
def test_same_seed_same_weights(tmp_path):
    import keras

    data = write_fdata(tmp_path / "FData", n=(32, 12, 12))
    weights = []
    for run in ("a", "b"):
        args = [
            "distill",
            "--data",
            str(data),
            "--out",
            str(tmp_path / run),
            "--teachers",
            "",
            "--augment",
            "--balance",
            "weights",
            *TINY,
        ]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        weights.append(keras.saving.load_model(tmp_path / run / "student_alone.keras", safe_mode=True).get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


@needs_tf
@pytest.mark.slow
def test_logit_adjust_trains_teacher_and_students_without_weights(tmp_path, monkeypatch):
    from kdtool.distill import distiller, fit

    data = write_fdata(tmp_path / "FData", n=(40, 12, 12), class_names=["nv", "mel", "bcc"])
    seen = {"compile": [], "batches": [], "distiller": []}

    class SpyDistiller(distiller.Distiller):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["distiller"].append(self.logit_offset)

    monkeypatch.setattr(distiller, "Distiller", SpyDistiller)
    real_compile, real_batches = fit.compile_classifier, fit.training_batches

    def spy_compile(model, *args, offset=None, **kwargs):
        seen["compile"].append((model.name, offset))
        return real_compile(model, *args, offset=offset, **kwargs)

    def spy_batches(run, x, targets, seed=None):
        batches = real_batches(run, x, targets, seed)
        seen["batches"].append((batches.sample_weight, batches.sampling_probs))
        return batches

    monkeypatch.setattr(fit, "compile_classifier", spy_compile)
    monkeypatch.setattr(fit, "training_batches", spy_batches)
    out = tmp_path / "run"
    args = [
        "distill",
        "--data",
        str(data),
        "--out",
        str(out),
        "--teachers",
        "vgg16",
        "--balance",
        "logit-adjust",
        "--no-augment",
        *TINY,
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    prior = np.log(np.bincount(np.load(data / "y_train.npy").argmax(1), minlength=3) / 40)
    # the teacher and the student alone compile with the log prior; the distilled student's Distiller holds it
    assert len(seen["compile"]) == 2 and len(seen["distiller"]) == 1  # teacher, student alone; distilled student
    for offset in [o for _, o in seen["compile"]] + seen["distiller"]:
        np.testing.assert_allclose(offset, prior, rtol=1e-5)
    assert all(w is None and p is None for w, p in seen["batches"])  # no class weights, no resampling
    doc = json.loads((out / "run.json").read_text())
    assert doc["config"]["balance"] == "logit-adjust" and doc["status"] == "FINISHED"


@needs_tf
@pytest.mark.slow
def test_kd_balance_weights_the_distilled_students_kd_term_only(tmp_path, monkeypatch, tinynet):
    from kdtool.distill import distiller

    data = write_fdata(tmp_path / "FData", n=(40, 12, 12), class_names=["nv", "mel", "bcc"])
    seen = []

    class SpyDistiller(distiller.Distiller):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append((self.kd_class_weights, self.logit_offset))

    monkeypatch.setattr(distiller, "Distiller", SpyDistiller)
    out = tmp_path / "run"
    args = ["distill", "--data", str(data), "--out", str(out), *tinynet, "--teacher-epochs", "1", "--no-augment"]
    result = CliRunner().invoke(main, [*args, "--kd-balance", "weights"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("class-weighted KD term") == 1  # the distilled student, not the one alone
    counts = np.bincount(np.load(data / "y_train.npy").argmax(1), minlength=3)
    ((weights, offset),) = seen
    np.testing.assert_allclose(weights, 40 / (3 * counts), rtol=1e-5)  # N / (K n_c): mean 1 over the images
    assert offset is not None  # logit adjustment (the default) still moves the hard-label term
    assert json.loads((out / "run.json").read_text())["config"]["kd_balance"] == "weights"
    refused = CliRunner().invoke(main, args)  # the same folder without it: another run
    assert refused.exit_code == 2 and "kd_balance: 'weights' there, 'none' now" in refused.output


@needs_tf
@pytest.mark.slow
def test_disk_full_keeps_previous_files(finished_run, tmp_path, monkeypatch):
    import errno
    import os as os_module

    data, out, args, _ = finished_run
    before = {p: p.read_bytes() for p in (out / "run.json", out / "summary.csv")}

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os_module, "fsync", full)
    result = CliRunner().invoke(main, [*args, "--fresh"])
    assert result.exit_code == 1, result.output
    assert "run.json: cannot write (No space left on device)" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert {p: p.read_bytes() for p in before} == before
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_without_tensorflow_one_line_says_how_to_install(tiny_fdata, tmp_path):
    code = (
        "import sys; sys.modules['tensorflow'] = None; from kdtool.cli import main; "
        f"main(['distill', '--data', {str(tiny_fdata)!r}, '--out', {str(tmp_path / 'o')!r}])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "pip install 'kdtool[train]'" in proc.stderr


@pytest.mark.slow
@needs_tf
@pytest.mark.parametrize("given,on", [(None, True), ("0", False)])
def test_training_loads_tensorflow_with_onednn_unless_the_user_says_otherwise(given, on):
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    code = (
        "import os; from kdtool.train_extra import require_train_extra; require_train_extra(); "
        "from kdtool.distill.run_folder import onednn_enabled; "
        "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], onednn_enabled())"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert proc.stdout.split() == [given or "1", str(on)]


@pytest.fixture()
def tinynet(monkeypatch):
    register_tinynet(monkeypatch)
    return [
        "--teachers",
        "tinynet",
        "--image-size",
        "8",
        "--weights",
        "imagenet",
        "--batch-size",
        "16",
        "--student-filters",
        "8,16",
        "--student-dense",
        "16",
        "--epochs",
        "1",
    ]


def _backbone_weights(model):
    return [np.asarray(w) for w in model.get_layer("tinynet_backbone").get_weights()]


@needs_tf
@pytest.mark.slow
def test_two_phase_teacher_freezes_the_backbone_first(tmp_path, tinynet):
    import keras

    import kdtool.layers  # noqa: F401 - registers the teachers' preprocessing layer
    from kdtool.distill.teachers import create_teacher

    data = write_fdata(tmp_path / "FData", n=(48, 15, 15))
    keras.utils.set_random_seed(42)
    initial = _backbone_weights(create_teacher("tinynet", 3, (8, 8, 3), 8, "imagenet")[0])
    runs = {}
    for epochs in (1, 3):  # 1: head phase only; 3: head, then two whole-network epochs
        out = tmp_path / f"run{epochs}"
        result = CliRunner().invoke(
            main,
            [
                "distill",
                "--data",
                str(data),
                "--out",
                str(out),
                *tinynet,
                "--teacher-epochs",
                str(epochs),
                "--teacher-head-epochs",
                "1",
                "--teacher-finetune-learning-rate",
                "1e-4",
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        assert "phase 1: head only (backbone frozen)" in result.output
        runs[epochs] = out
        rec = {m["name"]: m for m in json.loads((out / "run.json").read_text())["models"]}["teacher_tinynet"]
        assert (rec["head_epochs"], rec["finetune_learning_rate"], rec["epochs"]) == (1, 1e-4, epochs)
        with open(out / "teacher_tinynet" / "history.csv") as fh:
            assert [int(r["epoch"]) for r in csv.DictReader(fh)] == list(range(1, epochs + 1))
        assert not (out / ".backup").exists() or not any((out / ".backup").iterdir())

    def load(out):
        return keras.saving.load_model(out / "teacher_tinynet.keras", safe_mode=True)

    head_only, finetuned = load(runs[1]), load(runs[3])
    assert all(np.array_equal(a, b) for a, b in zip(_backbone_weights(head_only), initial, strict=True))
    assert not np.array_equal(head_only.get_layer("logits").get_weights()[0], 0)
    assert any(not np.array_equal(a, b) for a, b in zip(_backbone_weights(finetuned), initial, strict=True))


@needs_tf
@pytest.mark.slow
def test_head_phase_is_skipped_for_random_init(tmp_path, tinynet):
    data = write_fdata(tmp_path / "FData", n=(48, 15, 15))
    args = [a if a != "imagenet" else "none" for a in tinynet]
    result = CliRunner().invoke(
        main,
        [
            "distill",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            *args,
            "--teacher-epochs",
            "1",
            "--teacher-head-epochs",
            "1",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "phase 1" not in result.output
    rec = {m["name"]: m for m in json.loads((tmp_path / "run" / "run.json").read_text())["models"]}
    assert rec["teacher_tinynet"]["head_epochs"] == 0


@needs_tf
@pytest.mark.slow
def test_sweep_trains_one_student_per_pair_and_picks_by_val_balanced_accuracy(tmp_path, tinynet):
    data = write_fdata(tmp_path / "FData", n=(48, 15, 15))
    out = tmp_path / "run"
    args = ["distill", "--data", str(data), "--out", str(out), *tinynet, "--teacher-epochs", "1"]
    args += ["--sweep-temperatures", "1,4", "--sweep-alphas", "0.2,0.8"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "run.json").read_text())
    students = {m["name"]: m for m in doc["models"] if m["role"] == "student"}
    want = {f"student_tinynet_T{t}_a{a}": (float(t), float(a)) for t in (1, 4) for a in (0.2, 0.8)}
    assert {n: (m["temperature"], m["alpha"]) for n, m in students.items()} == want
    sweep = doc["sweep"]["teacher_tinynet"]
    assert len(sweep["points"]) == 4
    top = max(m["val"]["balanced_accuracy"] for m in students.values())
    assert sweep["best"]["val_balanced_accuracy"] == top
    assert students[sweep["best"]["name"]]["val"]["balanced_accuracy"] == top
    assert (out / "sweep_tinynet.png").stat().st_size > 1000
    assert f"best: {sweep['best']['name']}" in result.output
    rerun = CliRunner().invoke(main, args, catch_exceptions=False)
    assert rerun.exit_code == 0 and rerun.output.count("already done, skipped") == 6, rerun.output


@needs_tf
@pytest.mark.parametrize(
    "opt,message",
    [
        (["--teacher-head-epochs", "6"], "--teacher-head-epochs must lie in [0, --teacher-epochs=5]"),
        (["--sweep-alphas", "0.1,2"], "--sweep-alphas must lie in [0, 1]"),
        (["--sweep-temperatures", "1,x"], "--sweep-temperatures must be comma-separated numbers"),
        (["--teacher-finetune-learning-rate", "0"], "learning rates must be > 0"),
    ],
)
def test_bad_two_phase_and_sweep_options(tiny_fdata, tmp_path, opt, message):
    result = CliRunner().invoke(main, ["distill", "--data", str(tiny_fdata), "--out", str(tmp_path / "o"), *opt])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@needs_tf
def test_better_head_phase_wins(tmp_path):
    from kdtool.distill.fit import keep_better_phase

    model = tiny_backbone((8, 8, 3), None)
    saved = [w.copy() for w in model.get_weights()]
    (tmp_path / "head").mkdir()
    model.save_weights(tmp_path / "head" / "best.weights.h5")
    model.set_weights([w + 1 for w in saved])
    head_hist, hist = {"val_balanced_accuracy": [0.5, 0.7]}, {"val_balanced_accuracy": [0.6, 0.65, 0.4]}
    assert keep_better_phase(model, tmp_path / "head", 2, head_hist, 2, hist, 2) == 2  # head epoch 2 wins
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), saved, strict=True))
    hist["val_balanced_accuracy"][1] = 0.8
    assert keep_better_phase(model, tmp_path / "head", 2, head_hist, 2, hist, 2) == 4  # phase 2's epoch 2
    assert keep_better_phase(model, tmp_path / "head", 2, head_hist, None, {}, None) is None


@needs_tf
@pytest.mark.slow
def test_teacher_seeds_train_a_seed_ensemble_per_architecture(tmp_path, tinynet):
    import keras

    import kdtool.layers  # noqa: F401 - registers the teachers' preprocessing layer

    data = write_fdata(tmp_path / "FData", n=(48, 15, 15))
    args = [*tinynet, "--teacher-epochs", "1", "--seed", "42"]
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["distill", "--data", str(data), "--out", str(out), *args, "--teacher-seeds", "2"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "[3/4] teacher_tinynet_seed43: fine-tune" in result.output
    recs = {m["name"]: m for m in json.loads((out / "run.json").read_text())["models"]}
    assert set(recs) == {"student_alone", "teacher_tinynet", "teacher_tinynet_seed43", "student_tinynet"}
    assert (recs["teacher_tinynet"]["seed"], recs["teacher_tinynet_seed43"]["seed"]) == (42, 43)
    assert recs["student_tinynet"]["teacher"] == "teacher_tinynet+teacher_tinynet_seed43"

    def weights(path):
        return keras.saving.load_model(path, safe_mode=True).get_weights()

    first, second = weights(out / "teacher_tinynet.keras"), weights(out / "teacher_tinynet_seed43.keras")
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    # the second teacher is the very one a one-teacher run with --seed 43 trains
    alone = tmp_path / "seed43"
    result = CliRunner().invoke(
        main,
        ["distill", "--data", str(data), "--out", str(alone), *[a if a != "42" else "43" for a in args]],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    for a, b in zip(second, weights(alone / "teacher_tinynet.keras"), strict=True):
        np.testing.assert_array_equal(a, b)
    rerun = CliRunner().invoke(
        main, ["distill", "--data", str(data), "--out", str(out), *args, "--teacher-seeds", "2"], catch_exceptions=False
    )
    assert rerun.exit_code == 0 and rerun.output.count("already done, skipped") == 4, rerun.output
    refused = CliRunner().invoke(main, ["distill", "--data", str(data), "--out", str(out), *args])
    assert refused.exit_code == 2 and "teacher_seeds: 2 there, 1 now" in refused.output
    bad = CliRunner().invoke(
        main, ["distill", "--data", str(data), "--out", str(tmp_path / "o"), "--teacher-seeds", "0"]
    )
    assert bad.exit_code == 2 and "--teacher-seeds must be >= 1, got 0" in bad.output


@needs_tf
@pytest.mark.slow
def test_config_run_json_replays_a_run_into_another_folder(tmp_path):
    import keras

    data = write_fdata(tmp_path / "FData", n=(32, 12, 12))
    first = tmp_path / "first"
    args = [
        "distill",
        "--data",
        str(data),
        "--out",
        str(first),
        "--teachers",
        "",
        *TINY,
        "--seed",
        "3",
        "--lr-schedule",
        "constant",
        "--no-augment",
    ]
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    again = tmp_path / "again"
    result = CliRunner().invoke(
        main, ["distill", "--config", str(first / "run.json"), "--out", str(again)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    docs = [json.loads((folder / "run.json").read_text()) for folder in (first, again)]
    assert docs[1]["config"] == {**docs[0]["config"], "out": str(again)}
    weights = [
        keras.saving.load_model(folder / "student_alone.keras", safe_mode=True).get_weights()
        for folder in (first, again)
    ]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
