"""benchmarks/int8_noise.py: tie counting, tie-breaking, the output grid, and one tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def noise():
    return load_benchmark("int8_noise")


def test_random_ties_choose_only_among_the_tied_maxima(noise):
    scores = np.tile(np.array([[1.0, 3.0, 3.0, 0.0]]), (200, 1))
    picks = noise.random_tie_argmax(scores)
    assert set(picks.tolist()) == {1, 2}  # both tied classes drawn, never the others
    assert np.array_equal(noise.random_tie_argmax(scores), picks)  # seeded
    assert noise.top_ties(scores).all() and not noise.top_ties(np.array([[0.0, 1.0]])).any()


def test_grid_round_rounds_to_steps_and_clips_to_int8(noise):
    z = np.array([[-100.0, 0.26, 0.24, 100.0]])
    out = noise.grid_round(z, scale=0.5, zero_point=-10)
    assert out[0].tolist() == pytest.approx([-59.0, 0.5, 0.0, 68.5])  # (-128+10)*0.5 and (127+10)*0.5 at the ends


def test_compare_separates_tie_breaking_from_real_flips(noise):
    keras = np.array([[0.0, 0.3], [0.0, 0.3], [1.0, 0.0], [1.0, 0.0]])
    labels = np.array([1, 1, 0, 0])
    int8 = np.array([[0.2, 0.2], [0.2, 0.2], [1.0, 0.0], [0.0, 1.0]])  # two ties, one genuine flip
    c = noise.compare(keras, int8, labels)
    assert c["top_ties"] == 0.5
    assert c["agreement"] == 0.25  # argmax sends both ties to class 0
    assert c["accuracy_drop_lowest_index"] == pytest.approx(75.0)
    assert 25.0 <= c["accuracy_drop_random_ties"] <= 75.0  # the flip always counts, ties only when drawn wrong


def test_end_to_end_on_a_tiny_student(noise, tiny_fdata, tmp_path):
    import keras

    from kdtool.distill.student import build_student

    keras.utils.set_random_seed(0)
    model = build_student((8, 8, 3), 3, filters=(4, 8), dense_units=8)
    path = tmp_path / "student.keras"
    model.save(path)
    out_json, out_md = tmp_path / "n.json", tmp_path / "n.md"
    assert noise.main([str(path), "--data", str(tiny_fdata), "--json", str(out_json), "--md", str(out_md)]) == 0
    doc = json.loads(out_json.read_text())
    (res,) = doc["results"]
    for name in noise.VARIANTS:
        for split in ("val", "test"):
            assert 0.0 <= res[name][split]["agreement"] <= 1.0
    assert res["output_quantization"]["scale"] > 0
    half_step = res["output_quantization"]["scale"] / 2
    assert res["output_grid"]["val"]["mean_abs_logit_error"] <= half_step + 1e-4  # rounding only (JSON keeps 4 decimals)
    assert "first conv block kept float" in out_md.read_text()


def test_missing_model_is_refused(noise, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        noise.main([str(tmp_path / "missing.keras"), "--json", str(tmp_path / "o.json"), "--md", str(tmp_path / "o.md")])
    assert exc.value.code == 2 and "no such model file" in capsys.readouterr().err
