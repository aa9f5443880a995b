"""kdtool.folds: lesion-disjoint, class-spread folds from an FData folder's image_ids.csv."""

from __future__ import annotations

import numpy as np
import pytest

from kdtool.errors import InputError
from kdtool.folds import group_folds, read_groups


def _ids(folder, lesions, header="split,position,image_id,lesion_id,dx"):
    rows = [header]
    rows += [f"train,{i},ISIC_{i},{les},x" for i, les in enumerate(lesions)]
    rows += ["val,0,ISIC_v,HAM_v,x"]  # other splits are read only when asked for
    (folder / "image_ids.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_folds_keep_every_lesion_whole_and_spread_each_class(tmp_path):
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4, size=60)  # 60 lesions of 1-3 images
    lesions = [f"L{j}" for j, s in enumerate(sizes) for _ in range(s)]
    y = np.array([j % 2 for j, s in enumerate(sizes) for _ in range(s)])
    groups = read_groups(_ids(tmp_path, lesions), "train", len(lesions))
    assert groups.tolist() == lesions
    f = group_folds(groups, y, 3, seed=1)
    assert set(f.tolist()) == {0, 1, 2}
    for les in set(lesions):
        assert len({int(f[i]) for i, name in enumerate(lesions) if name == les}) == 1
    for c in (0, 1):
        per_fold = np.bincount(f[y == c], minlength=3)
        assert per_fold.max() - per_fold.min() <= 3  # at most one lesion's worth apart
    assert not np.array_equal(f, group_folds(groups, y, 3, seed=2))
    assert read_groups(tmp_path, "val", 1).tolist() == ["HAM_v"]


def test_without_groups_every_image_is_its_own_group(tmp_path):
    assert read_groups(tmp_path, "train", 5) is None
    f = group_folds(None, np.array([0, 0, 0, 0, 1, 1]), 2, seed=0)
    assert np.bincount(f).tolist() == [3, 3] and np.bincount(f[4:], minlength=2).tolist() == [1, 1]


@pytest.mark.parametrize(
    "lesions, header, n, message",
    [
        (["A", "B"], "split,position,image_id,lesion_id,dx", 3, "do not cover positions 0..2"),
        (["A", "B"], "split,position,image_id,dx,label", 2, "missing column"),
    ],
)
def test_bad_image_ids_get_one_line_naming_the_file(tmp_path, lesions, header, n, message):
    _ids(tmp_path, lesions, header)
    with pytest.raises(InputError, match=message) as exc:
        read_groups(tmp_path, "train", n)
    assert "image_ids.csv" in exc.value.format_message()


def test_too_few_groups_for_the_folds():
    with pytest.raises(ValueError, match="1 group"):
        group_folds(np.array(["a", "a"]), np.array([0, 0]), 2, 0)
    with pytest.raises(ValueError, match="at least 2"):
        group_folds(None, np.array([0, 1]), 1, 0)
