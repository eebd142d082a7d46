"""Shared helpers: atomic writes and ragged arrays."""

from __future__ import annotations

import numpy as np
import pytest

from newsrec.data.ragged import keep_last, lengths_to_offsets, pad_rows, take_rows
from newsrec.utils.io import atomic_path, write_text


def test_atomic_write_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "metrics.json"
    write_text(target, "old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt  # killed mid-write
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no leftover
    write_text(target, "new")
    assert target.read_text() == "new"


def test_atomic_folder_replaces_or_refuses_an_existing_one(tmp_path):
    target = tmp_path / "world"
    (target / "train").mkdir(parents=True)
    (target / "train" / "old.tsv").write_text("old")
    with pytest.raises(OSError), atomic_path(target, replace=False) as tmp:
        (tmp / "train").mkdir(parents=True)  # someone else's finished folder stays
    assert (target / "train" / "old.tsv").read_text() == "old"
    with atomic_path(target) as tmp:
        (tmp / "dev").mkdir(parents=True)
    assert [p.name for p in target.iterdir()] == ["dev"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]


def test_temporaries_keep_the_suffix_that_picks_the_format(tmp_path):
    with atomic_path(tmp_path / "vectors.npy") as tmp:
        np.save(tmp, np.arange(3))  # np.save would append .npy to any other name
    assert np.load(tmp_path / "vectors.npy").tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.npy"]


def test_ragged_rows_padding_and_keep_last():
    values = np.array([1, 2, 3, 4, 5, 6])
    offsets = lengths_to_offsets(np.array([3, 0, 2, 1]))  # rows [1 2 3] [] [4 5] [6]
    assert offsets.tolist() == [0, 3, 3, 5, 6] and offsets.dtype == np.int64
    assert take_rows(offsets, values, np.array([2, 0])).tolist() == [4, 5, 1, 2, 3]
    left, mask = pad_rows(offsets, values, np.array([0, 1, 2]), 2)
    assert left.tolist() == [[2, 3], [0, 0], [4, 5]]  # the last 2, most recent last
    assert mask.tolist() == [[True, True], [False, False], [True, True]]
    right, _ = pad_rows(offsets, values, np.array([0, 3]), 2, right=True)
    assert right.tolist() == [[1, 2], [6, 0]]
    new_offsets, kept = keep_last(offsets, values, values != 2, limit=1)
    assert new_offsets.tolist() == [0, 1, 1, 2, 3] and kept.tolist() == [3, 5, 6]
