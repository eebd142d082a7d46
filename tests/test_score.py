"""The submission file and its scorer: what the leaderboard will see, checked end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from newsrec.evaluation.metrics import impression_metrics
from newsrec.evaluation.score import main, score_files, truth_labels
from newsrec.evaluation.submission import (
    SubmissionError,
    ranks_from_scores,
    read_prediction,
    write_prediction,
)

SRC = Path(__file__).resolve().parents[1] / "src"
KEYS = ("auc", "mrr", "ndcg@5", "ndcg@10")


def make_split(seed: int, num: int = 150, ties: bool = False):
    """Impressions as the evaluation produces them: ids, flat scores and labels, offsets."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, num)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    ids = rng.choice(np.arange(1, 10**6), num, replace=False)
    scores = rng.random(offsets[-1])
    if ties:
        scores = np.round(scores, 1)
    labels = (rng.random(offsets[-1]) < 0.2).astype(np.int64)
    return ids, scores, labels, offsets


def write_truth(path: Path, ids, labels, offsets) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for k, impression_id in enumerate(ids):
            f.write(
                f"{impression_id} [{','.join(map(str, labels[offsets[k] : offsets[k + 1]]))}]\n"
            )
    return path


def write_behaviors(path: Path, ids, labels, offsets) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for k, impression_id in enumerate(ids):
            candidates = " ".join(
                f"N{k}{i}-{label}" for i, label in enumerate(labels[offsets[k] : offsets[k + 1]])
            )
            f.write(f"{impression_id}\tU{k}\t11/15/2019 10:22:32 AM\tN1 N2\t{candidates}\n")
    return path


def assert_metrics_equal(actual: dict, expected: dict) -> None:
    for key in KEYS:
        assert actual[key] == pytest.approx(expected[key], abs=1e-9), key
    assert actual["num_impressions"] == expected["num_impressions"]
    assert actual["auc_skipped"] == expected["auc_skipped"]


# -- ranks --------------------------------------------------------------------------------------


def test_ranks_by_hand() -> None:
    scores = np.array([0.2, 0.9, 0.5, 0.7, 0.7, 0.1, 0.7])
    offsets = np.array([0, 3, 7])
    # Impression 2 has three scores of 0.7: the earlier candidate gets the better rank.
    assert ranks_from_scores(scores, offsets).tolist() == [3, 1, 2, 1, 2, 4, 3]


def test_ranks_are_permutations_in_candidate_order() -> None:
    _, scores, _, offsets = make_split(0, ties=True)
    ranks = ranks_from_scores(scores, offsets)
    for k in range(len(offsets) - 1):
        r, s = ranks[offsets[k] : offsets[k + 1]], scores[offsets[k] : offsets[k + 1]]
        assert sorted(r.tolist()) == list(range(1, len(r) + 1))
        assert (np.diff(s[np.argsort(r)]) <= 0).all()  # rank 1 holds the highest score


def test_ranks_in_bounded_chunks_equal_ranks_at_once() -> None:
    # MIND-large's test split is ranked a few million candidates at a time; a chunk boundary
    # must fall between impressions, never change a rank.
    _, scores, _, offsets = make_split(3, ties=True)
    whole = ranks_from_scores(scores, offsets, max_entries=len(scores))
    for max_entries in (1, 7, 50):
        np.testing.assert_array_equal(ranks_from_scores(scores, offsets, max_entries), whole)


def test_ranks_refuse_bad_offsets_and_nan() -> None:
    with pytest.raises(ValueError, match="offsets"):
        ranks_from_scores(np.zeros(4), np.array([0, 2, 3]))
    with pytest.raises(ValueError, match="NaN"):
        ranks_from_scores(np.array([0.1, np.nan]), np.array([0, 2]))


# -- the file -----------------------------------------------------------------------------------


def test_zip_holds_exactly_prediction_txt_in_the_official_format(tmp_path: Path) -> None:
    ids, scores, _, offsets = make_split(1)
    path = write_prediction(tmp_path, ids, scores, offsets)
    assert path == tmp_path / "prediction.zip"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prediction.zip"]  # no temp left
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["prediction.txt"]
        lines = zf.read("prediction.txt").decode("utf-8").splitlines()
    assert len(lines) == len(ids)
    ranks = ranks_from_scores(scores, offsets)
    for k, line in enumerate(lines):
        assert re.fullmatch(r"\d+ \[\d+(,\d+)*\]", line)
        expected = ",".join(map(str, ranks[offsets[k] : offsets[k + 1]]))
        assert line == f"{ids[k]} [{expected}]"


def test_read_prediction_accepts_zip_and_txt(tmp_path: Path) -> None:
    ids, scores, _, offsets = make_split(2)
    path = write_prediction(tmp_path / "out" / "sub.zip", ids, scores, offsets)
    assert path == tmp_path / "out" / "sub.zip"
    from_zip = read_prediction(path)
    txt = tmp_path / "prediction.txt"
    with zipfile.ZipFile(path) as zf:
        txt.write_bytes(zf.read("prediction.txt"))
    assert read_prediction(txt) == from_zip
    assert [i for i, _ in from_zip] == ids.tolist()


# -- scoring ------------------------------------------------------------------------------------


def test_score_equals_metrics_of_the_raw_scores_without_ties(tmp_path: Path) -> None:
    ids, scores, labels, offsets = make_split(3)
    assert len(np.unique(scores)) == len(scores)
    truth = write_truth(tmp_path / "truth.txt", ids, labels, offsets)
    prediction = write_prediction(tmp_path, ids, scores, offsets)
    impression = np.repeat(ids, np.diff(offsets))
    expected = impression_metrics(scores, labels, impression)
    assert expected["auc_skipped"] > 0
    assert_metrics_equal(score_files(truth, prediction), expected)


def test_score_equals_metrics_of_reciprocal_ranks_with_ties(tmp_path: Path) -> None:
    ids, scores, labels, offsets = make_split(4, ties=True)
    truth = write_truth(tmp_path / "truth.txt", ids, labels, offsets)
    prediction = write_prediction(tmp_path, ids, scores, offsets)
    reciprocal = 1.0 / ranks_from_scores(scores, offsets)
    expected = impression_metrics(reciprocal, labels, np.repeat(ids, np.diff(offsets)))
    assert_metrics_equal(score_files(truth, prediction), expected)


def test_behaviors_tsv_is_accepted_as_truth(tmp_path: Path) -> None:
    ids, scores, labels, offsets = make_split(5)
    prediction = write_prediction(tmp_path, ids, scores, offsets)
    from_truth = score_files(write_truth(tmp_path / "truth.txt", ids, labels, offsets), prediction)
    behaviors = write_behaviors(tmp_path / "behaviors.tsv", ids, labels, offsets)
    assert score_files(behaviors, prediction) == from_truth


def _prediction_lines(tmp_path: Path) -> tuple[Path, list[str]]:
    ids = np.array([11, 12, 13])
    labels = np.array([1, 0, 0, 1, 0, 1])
    offsets = np.array([0, 3, 5, 6])
    truth = write_truth(tmp_path / "truth.txt", ids, labels, offsets)
    return truth, ["11 [2,1,3]", "12 [1,2]", "13 [1]"]


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda lines: [lines[0], "99 [1,2]", lines[2]], r"prediction\.txt:2: impression id 99"),
        (lambda lines: [lines[0], "12 [1,2,3]", lines[2]], r"prediction\.txt:2: 3 ranks"),
        (lambda lines: ["11 [1,1,3]", *lines[1:]], r"prediction\.txt:1: .*not a permutation"),
        (lambda lines: ["11 [0,1,2]", *lines[1:]], r"prediction\.txt:1: .*not a permutation"),
        (lambda lines: lines[:2], r"prediction\.txt: ends early: no line for truth line 3"),
        (lambda lines: [*lines, "14 [1]"], r"prediction\.txt:4: extra line"),
        (lambda lines: ["11 [2, 1, x]", *lines[1:]], r"prediction\.txt:1: not a list"),
    ],
)
def test_bad_prediction_is_refused_naming_the_line(tmp_path: Path, edit, pattern) -> None:
    truth, lines = _prediction_lines(tmp_path)
    prediction = tmp_path / "prediction.txt"
    prediction.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")
    with pytest.raises(SubmissionError, match=pattern):
        score_files(truth, prediction)


def test_unlabeled_behaviors_are_refused(tmp_path: Path) -> None:
    behaviors = tmp_path / "behaviors.tsv"
    behaviors.write_text("11\tU1\t11/15/2019 10:22:32 AM\t\tN1 N2\n", encoding="utf-8")
    prediction = tmp_path / "prediction.txt"
    prediction.write_text("11 [1,2]\n", encoding="utf-8")
    with pytest.raises(SubmissionError, match=r"behaviors\.tsv:1: .*no 0/1 label"):
        score_files(behaviors, prediction)


def test_zip_without_prediction_txt_is_refused(tmp_path: Path) -> None:
    truth, _ = _prediction_lines(tmp_path)
    bad = tmp_path / "prediction.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("predictions.txt", "11 [2,1,3]\n")
    with pytest.raises(SubmissionError, match="must hold prediction.txt"):
        score_files(truth, bad)


# -- the command line ---------------------------------------------------------------------------


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "newsrec.evaluation.score", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_prints_and_writes_the_metrics(tmp_path: Path) -> None:
    ids, scores, labels, offsets = make_split(6)
    truth = write_truth(tmp_path / "truth.txt", ids, labels, offsets)
    prediction = write_prediction(tmp_path, ids, scores, offsets)
    out = tmp_path / "scores.json"
    done = _run_cli(str(truth), str(prediction), "--out", str(out))
    assert done.returncode == 0, done.stderr
    expected = score_files(truth, prediction)
    for name, key in [("AUC", "auc"), ("MRR", "mrr"), ("nDCG@5", "ndcg@5"), ("nDCG@10", "ndcg@10")]:
        assert re.search(rf"^{re.escape(name)}\s+{expected[key]:.4f}$", done.stdout, re.M)
    assert json.loads(out.read_text()) == pytest.approx(expected)


def test_cli_reports_a_bad_line_without_traceback(tmp_path: Path, capsys) -> None:
    truth, lines = _prediction_lines(tmp_path)
    prediction = tmp_path / "prediction.txt"
    prediction.write_text("11 [2,1,3]\n99 [1,2]\n13 [1]\n", encoding="utf-8")
    assert main([str(truth), str(prediction)]) == 1  # in-process: the exit code of the CLI
    err = capsys.readouterr().err
    assert "prediction.txt:2: impression id 99" in err
    assert "Traceback" not in err


def test_truth_labels_are_aligned_with_the_split_whatever_the_line_order(tmp_path: Path) -> None:
    # The leaderboard-sized reader (Arrow, one pass) must give each candidate its own label.
    ids, _, labels, offsets = make_split(4)
    lines = [
        f"{ids[k]} [{','.join(map(str, labels[offsets[k] : offsets[k + 1]]))}]\n"
        for k in range(len(ids))
    ]
    truth = tmp_path / "truth.txt"
    truth.write_text("".join(lines[::-1]))  # another order than the split's
    np.testing.assert_array_equal(truth_labels(truth, ids, offsets), labels)
    truth.write_text("".join(lines[1:]))
    with pytest.raises(SubmissionError, match=f"no line for impression {ids[0]}"):
        truth_labels(truth, ids, offsets)
    truth.write_text("".join(lines))
    shifted = offsets.copy()
    shifted[1:] += 1  # impression 0 would need one label more
    with pytest.raises(SubmissionError, match=f"impression {ids[0]} has .* labels for"):
        truth_labels(truth, ids, shifted)
