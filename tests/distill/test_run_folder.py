"""The run folder (kdtool.distill.run_folder): run.json records the full config, and a re-run reuses an
older folder's finished models, including folders written while kdtool still had --ema."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner
from conftest import write_fdata

from kdtool.data import load_fdata, sha256_file
from kdtool.distill.config import DistillConfig
from kdtool.distill.run_folder import Run, config_doc
from kdtool.errors import InputError

pytest.importorskip("tensorflow")  # run.json records TensorFlow's version and devices


def _older_folder(tmp_path, edit_config) -> tuple[DistillConfig, object]:
    """A run folder with one finished model, whose run.json config ``edit_config`` then rewrites."""
    fd = load_fdata(write_fdata(tmp_path / "FData"))
    cfg = DistillConfig(data=str(fd.root), out=str(tmp_path / "run"), epochs=2)
    run = Run(cfg, fd, fresh=False)
    model = run.out / "student_alone.keras"
    model.write_bytes(b"stands in for a saved model")
    run.add({"name": "student_alone", "file": model.name, "sha256": sha256_file(model)})
    run.save("FINISHED")
    doc = json.loads(run.path.read_text())
    doc["config"] = edit_config(doc["config"])
    run.path.write_text(json.dumps(doc))
    return cfg, fd


def test_run_json_records_the_full_config_under_the_dataclass_keys(tmp_path):
    fd = load_fdata(write_fdata(tmp_path / "FData"))
    cfg = DistillConfig(data=str(fd.root), out=str(tmp_path / "run"), temperatures=(1.0, 4.0))
    Run(cfg, fd, fresh=False)
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert list(recorded) == [f.name for f in dataclasses.fields(DistillConfig)]
    assert recorded == config_doc(cfg) and recorded["temperatures"] == [1.0, 4.0]
    assert (
        DistillConfig(**{k: tuple(v) if isinstance(v, list) and k != "teachers" else v for k, v in recorded.items()})
        == cfg
    )


@pytest.mark.parametrize(
    "edit",
    [lambda c: {**c, "ema": 0.0}, lambda c: {**c, "ema": 0}, lambda c: {k: v for k, v in c.items() if k != "ema"}],
    ids=["ema-0.0", "ema-0", "no-ema-key"],
)
def test_an_older_folder_without_ema_on_is_reused(tmp_path, edit):
    cfg, fd = _older_folder(tmp_path, edit)
    run = Run(cfg, fd, fresh=False)
    assert run.done("student_alone") is not None  # the finished model counts: a re-run skips it
    assert run.doc["first_started"] and "ema" not in run.doc["config"]


def test_an_older_folder_that_used_ema_gets_one_line(tmp_path):
    cfg, fd = _older_folder(tmp_path, lambda c: {**c, "ema": 0.999})
    with pytest.raises(InputError) as err:
        Run(cfg, fd, fresh=False)
    message = err.value.format_message()
    assert message == (
        f"{cfg.out}/run.json: this run used --ema 0.999, which kdtool no longer supports; "
        "use another --out, or --fresh to retrain here"
    )
    assert Run(cfg, fd, fresh=True).done("student_alone") is None  # --fresh starts over in the folder


def test_another_setting_still_refuses_the_folder(tmp_path):
    cfg, fd = _older_folder(tmp_path, lambda c: {**c, "ema": 0.0, "epochs": 3})
    with pytest.raises(InputError, match=r"different configuration \(epochs: 3 there, 2 now\)"):
        Run(cfg, fd, fresh=False)


def test_kdtool_distill_refuses_an_ema_folder_with_exit_code_2(tmp_path):
    from kdtool.cli import main

    cfg, _ = _older_folder(tmp_path, lambda c: {**c, "ema": 0.9})
    result = CliRunner().invoke(main, ["distill", "--data", cfg.data, "--out", cfg.out, "--epochs", "2"])
    assert result.exit_code == 2, result.output
    assert "this run used --ema 0.9, which kdtool no longer supports" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
