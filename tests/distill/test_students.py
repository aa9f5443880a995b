"""The student registry: every student builds at 32 and 64 px with logits out, the default is today's
student layer for layer, the multiply-add counter against a hand count, --student and --list-students
through the CLI, and each student's int8 TFLite uses builtin ops only."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_fdata

from kdtool.cli import main
from kdtool.distill.config import DistillConfig
from kdtool.distill.students import DEFAULT_STUDENT, STUDENTS, create_student, list_students, parse_student
from kdtool.errors import InputError

needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs the [train] extra")


def test_registry_names_and_default():
    assert list_students() == ["mobilenetv2-0.35", "resnet8", "vgg-small", "vgg-wide"]
    assert DEFAULT_STUDENT == "vgg-small" == DistillConfig().student
    for spec in STUDENTS.values():
        assert spec.reference and spec.description and " 20" in spec.build.__doc__  # names its reference and year
    with pytest.raises(InputError, match=r"unknown student 'nope'; choose from: mobilenetv2-0.35, resnet8, vgg-small"):
        parse_student("nope")


@needs_tf
@pytest.mark.parametrize("name", sorted(STUDENTS))
@pytest.mark.parametrize("side", [32, 64])
def test_every_student_builds_and_outputs_logits(name, side):
    model = create_student(name, (side, side, 3), 5, name="s")
    x = np.random.default_rng(0).random((2, side, side, 3), dtype=np.float32)
    out = np.asarray(model(x, training=False))
    assert out.shape == (2, 5) and np.isfinite(out).all()
    assert model.layers[-1].name == "logits" and model.layers[-1].activation.__name__ == "linear"
    assert model.name == "s"


@needs_tf
@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_every_student_adapts_to_the_largest_side(name):
    """256 px: still global pooling, and strides stop at 2 px (the smallest side, 32, too)."""
    model = create_student(name, (256, 256, 3), 7)
    assert model.output_shape == (None, 7)


@needs_tf
def test_default_is_todays_student_layer_for_layer():
    from kdtool.distill.fit import new_student
    from kdtool.distill.student import build_student

    today = build_student((32, 32, 3), 7, name="student_alone")
    cfg = DistillConfig()
    fd = type("FD", (), {"image_shape": (32, 32, 3), "num_classes": 7})()
    registry = new_student(cfg, fd, "student_alone")
    assert registry.count_params() == today.count_params() == 139_247
    assert [(la.name, la.output.shape) for la in registry.layers] == [(la.name, la.output.shape) for la in today.layers]
    # the vgg options keep shaping the vgg family; vgg-wide doubles the filters
    small = create_student("vgg-small", (32, 32, 3), 7, **DistillConfig(student_filters=(8, 16)).student_recipe())
    wide = create_student("vgg-wide", (32, 32, 3), 7, **DistillConfig(student_filters=(8, 16)).student_recipe())
    assert small.get_layer("block2_conv2").filters == 16 and wide.get_layer("block2_conv2").filters == 32
    assert create_student("vgg-wide", (32, 32, 3), 7).get_layer("block3_conv1").filters == 160


@needs_tf
def test_mac_counter_against_a_hand_count():
    import keras

    from kdtool.distill.students.profile import count_macs, int8_size_estimate, layer_costs

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 positions x 3*3*3*4 = 6912
    x = keras.layers.MaxPooling2D(2)(x)  # not counted
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 2*2 x 3*3*4 = 144
    x = keras.layers.Conv2D(6, 1)(x)  # 2*2 x 4*6 = 96
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5)(x)  # 6*5 = 30
    model = keras.Model(inputs, x)
    assert count_macs(model) == 6912 + 144 + 96 + 30
    assert [r["kind"] for r in layer_costs(model)] == ["conv", "depthwise", "conv", "dense"]
    weights = 108 + 36 + 24 + 30
    assert int8_size_estimate(model) == weights + 24 * (4 + 4 + 6 + 5) + 670 * 4


@needs_tf
def test_vgg_small_macs_match_the_documented_17_4_million():
    from kdtool.distill.students.profile import count_macs

    assert count_macs(create_student("vgg-small", (32, 32, 3), 7)) == 17_422_080


def test_unknown_student_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["distill", "--student", "vgg-tiny", "--data", str(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "unknown student 'vgg-tiny'" in lines[0] and "resnet8" in lines[0]


def test_fixed_design_refuses_vgg_options(tmp_path):
    args = ["distill", "--student", "resnet8", "--student-filters", "8,16", "--student-dropout", "0.1"]
    result = CliRunner().invoke(main, [*args, "--data", str(tmp_path)])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert "--student resnet8 has a fixed design and ignores --student-filters, --student-dropout" in line
    DistillConfig(student="mobilenetv2-0.35").check()  # the defaults are fine
    DistillConfig(student="vgg-wide", student_filters=(8,)).check()


def test_old_run_json_without_student_means_the_default(tmp_path):
    import json

    from kdtool.distill.config import SETTINGS_BEFORE_THEY_EXISTED
    from kdtool.distill.config_file import read_config

    assert SETTINGS_BEFORE_THEY_EXISTED["student"] == "vgg-small"
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"config": {"epochs": 3}}))
    assert read_config(path)["student"] == "vgg-small"
    path.write_text(json.dumps({"config": {"epochs": 3, "student": "resnet8"}}))
    assert read_config(path)["student"] == "resnet8"


@needs_tf
def test_list_students_lists_every_name_at_the_datas_resolution(tmp_path):
    result = CliRunner().invoke(main, ["distill", "--list-students"])
    assert result.exit_code == 0, result.output
    for name in list_students():
        assert name in result.output
    assert "139,247" in result.output and "17.42" in result.output and "at 32x32x3, 7 classes" in result.output
    assert "estimate" in result.output
    data = write_fdata(tmp_path / "FData", n=(6, 3, 3), k=3, size=64)
    result = CliRunner().invoke(main, ["distill", "--list-students", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "at 64x64x3, 3 classes" in result.output and "69.62" in result.output  # vgg-small at 64 px
    assert not (tmp_path / "models").exists()


@needs_tf
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_int8_tflite_has_builtin_ops_only(name):
    """Full-integer conversion (int8 in and out) with TFLITE_BUILTINS_INT8 only: fails on any custom or flex op."""
    import tensorflow as tf

    model = create_student(name, (32, 32, 3), 7)
    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.random((1, 32, 32, 3), dtype=np.float32)] for _ in range(4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    data = converter.convert()
    interp = tf.lite.Interpreter(model_content=data)
    interp.allocate_tensors()
    ops = {op["op_name"] for op in interp._get_ops_details()}
    assert ops and all(op.isupper() and "FLEX" not in op and "CUSTOM" not in op for op in ops), ops
    assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops
    from kdtool.distill.students.profile import int8_size_estimate

    assert abs(int8_size_estimate(model) - len(data)) <= 0.03 * len(data)  # the estimate's measured accuracy


def test_several_students_parse_in_order_once_and_suffix_their_names():
    from kdtool.distill.stages import stage_count, student_names
    from kdtool.distill.students import model_suffix, parse_students

    assert parse_students(" resnet8, vgg-small ,resnet8") == ["resnet8", "vgg-small"]
    with pytest.raises(InputError, match="names no student"):
        parse_students(" , ")
    with pytest.raises(InputError, match="unknown student 'vgg'"):
        parse_students("resnet8,vgg")
    assert model_suffix("mobilenetv2-0.35") == "_mobilenetv2_035"
    cfg = DistillConfig(student="resnet8,mobilenetv2-0.35", student_dense=64)
    with pytest.raises(InputError, match="--student resnet8,mobilenetv2-0.35 have fixed designs and ignores"):
        cfg.check_student()
    DistillConfig(student="resnet8,vgg-small", student_dense=64).check_student()  # shapes the vgg one
    cfg = DistillConfig(student="resnet8,vgg-small", teachers=["a", "b"], ensemble=True)
    assert stage_count(cfg) == 2 + 2 * (1 + 2 + 1)  # 2 teachers; per student: alone, 2 distilled, ensemble
    assert student_names(cfg) == {"resnet8": "_resnet8", "vgg-small": "_vgg_small"}


@needs_tf
def test_several_students_from_one_teacher_pass(tmp_path, monkeypatch):
    """--students a,b: the teacher is fine-tuned and cached once, each student trains alone and distilled,
    summary.csv names each row's student and compares it with the student alone of the same design."""
    import csv
    import json

    from conftest import register_tinynet

    register_tinynet(monkeypatch)
    data = write_fdata(tmp_path / "FData", n=(32, 12, 12), k=3)
    out = tmp_path / "run"
    args = ["distill", "--data", str(data), "--out", str(out), "--teachers", "tinynet", "--image-size", "8"]
    args += ["--weights", "imagenet", "--epochs", "1", "--teacher-epochs", "1", "--batch-size", "16"]
    args += ["--students", "vgg-small,resnet8", "--student-filters", "4,8", "--student-dense", "8"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in json.loads((out / "run.json").read_text())["models"]}
    assert set(models) == {
        "student_alone_vgg_small",
        "student_alone_resnet8",
        "teacher_tinynet",
        "student_tinynet_vgg_small",
        "student_tinynet_resnet8",
    }
    assert result.output.count("teacher_tinynet: fine-tune") == 1
    assert models["student_tinynet_resnet8"]["student"] == models["student_alone_resnet8"]["student"] == "resnet8"
    assert models["student_alone_vgg_small"]["params"] < models["student_alone_resnet8"]["params"]  # filters 4,8
    rows = {r["name"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert rows["student_tinynet_resnet8"]["student"] == "resnet8" and rows["teacher_tinynet"]["student"] == ""
    assert "student_tinynet_resnet8 minus student_alone_resnet8:" in result.output
    assert "student_tinynet_vgg_small minus student_alone_vgg_small:" in result.output
    phases = json.loads((out / "run.json").read_text())["phases"]  # where the time went, one entry per phase
    kinds = [p["phase"] for p in phases]
    assert kinds.count("fine-tune") == kinds.count("cache logits") == kinds.count("summary") == 1
    assert kinds.count("train") == 4 and kinds.count("evaluate") == 5
    train = {p["model"]: p for p in phases if p["phase"] == "train"}
    assert train["student_alone_resnet8"]["images"] == 32  # one epoch of 32 training images
    assert train["student_alone_resnet8"]["gmacs_per_second"] > 0
    assert models["student_alone_resnet8"]["train_seconds"] == train["student_alone_resnet8"]["seconds"]
    assert "where the time went:" in result.output
    assert rows["student_tinynet_resnet8"]["alone"] == "student_alone_resnet8"
    assert rows["teacher_tinynet"]["alone"] == "student_alone_vgg_small"  # no design: the first student alone
    assert "teacher_tinynet minus student_alone_vgg_small:" in result.output
    rerun = CliRunner().invoke(main, args, catch_exceptions=False)
    assert rerun.exit_code == 0 and rerun.output.count("already done, skipped") == 5, rerun.output
    again = json.loads((out / "run.json").read_text())["phases"]  # the finished models' time stays on record
    assert [p for p in again if p["phase"] == "train"] == [p for p in phases if p["phase"] == "train"]
