"""Score a leaderboard submission against the truth, as the MIND competition's scorer does.

    python -m newsrec.evaluation.score TRUTH PREDICTION [--out scores.json]

TRUTH: lines ``<impression id> [l1,l2,...]`` of 0/1 labels, or a labeled behaviors.tsv.
PREDICTION: prediction.txt or prediction.zip (see :mod:`newsrec.evaluation.submission`).

The two files are read line by line and must agree line for line: same impression id, same
number of candidates, and ranks that are a permutation of 1..n. Each candidate is scored
1/rank, as the official scorer does, and the metrics are those of
:func:`newsrec.evaluation.metrics.impression_metrics`, so a submission checked here and the metrics
printed during evaluation are the same numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from itertools import zip_longest
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv

from newsrec.constants import METRICS
from newsrec.data.ragged import lengths_to_offsets, take_rows
from newsrec.evaluation.metrics import impression_metrics
from newsrec.evaluation.submission import SubmissionError, iter_prediction, parse_ranked_line

_DISPLAY = {"auc": "AUC", "mrr": "MRR", "ndcg@5": "nDCG@5", "ndcg@10": "nDCG@10"}


def _parse_behaviors_line(line: str, path: Path, line_no: int) -> tuple[int, list[int]]:
    """A behaviors.tsv row -> (impression id, labels); the labels end each ``N123-1``."""
    columns = line.rstrip("\r\n").split("\t")
    if len(columns) != 5:
        raise SubmissionError(path, line_no, f"behaviors.tsv has 5 columns, got {len(columns)}")
    try:
        impression_id = int(columns[0])
    except ValueError:
        raise SubmissionError(
            path, line_no, f"impression id {columns[0]!r} is not an integer"
        ) from None
    labels = []
    for candidate in columns[4].split():
        _, dash, label = candidate.rpartition("-")
        if not dash or label not in ("0", "1"):
            raise SubmissionError(
                path,
                line_no,
                f"candidate {candidate!r} has no 0/1 label: truth needs a labeled split "
                "(MIND-large test has none)",
            )
        labels.append(int(label))
    return impression_id, labels


def iter_truth(path: Path | str) -> Iterator[tuple[int, int, list[int]]]:
    """(line number, impression id, labels) for each non-blank line of a truth file or a
    labeled behaviors.tsv (told apart by its tabs)."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(path, None, "no such file")
    with open(path, encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if "\t" in line:
                impression_id, labels = _parse_behaviors_line(line, path, line_no)
            else:
                impression_id, labels = parse_ranked_line(line, path, line_no)
                if any(label not in (0, 1) for label in labels):
                    raise SubmissionError(path, line_no, "truth labels must be 0 or 1")
            yield line_no, impression_id, labels


def truth_labels(path: Path | str, impression_ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The 0/1 labels [P] of a truth file (``<impression id> [l1,l2,...]`` lines), aligned
    with a split's candidates: impression ``impression_ids[k]`` is ``offsets[k]:offsets[k + 1]``.

    Parsed by Arrow in 16 MiB blocks, not line by line in Python and not all at once: the
    synthetic MIND-large test split's truth has 2.4M lines and 87M labels, which as one Arrow
    table of strings took 1.6 GiB. Raises SubmissionError when an impression is missing or
    has another number of labels than candidates.
    """
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(path, None, "no such file")
    ids, counts, flat = [], [], []
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=["id", "labels"], block_size=16 << 20),
            parse_options=pa_csv.ParseOptions(delimiter=" "),
            convert_options=pa_csv.ConvertOptions(
                column_types={"id": pa.int64(), "labels": pa.string()}
            ),
        )
        for block in reader:
            lists = pc.split_pattern(pc.utf8_trim(block["labels"], "[]"), ",")
            flat.append(pc.cast(pc.list_flatten(lists), pa.int8()).to_numpy(zero_copy_only=False))
            counts.append(pc.list_value_length(lists).to_numpy(zero_copy_only=False))
            ids.append(block["id"].to_numpy())
    except (pa.ArrowInvalid, ValueError) as err:
        raise SubmissionError(path, None, f"not '<id> [0,1,...]' lines: {err}") from None
    flat = np.concatenate(flat) if flat else np.zeros(0, np.int8)
    ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    counts = np.concatenate(counts).astype(np.int64) if counts else np.zeros(0, np.int64)
    if ((flat != 0) & (flat != 1)).any():
        raise SubmissionError(path, None, "truth labels must be 0 or 1")
    wanted = np.asarray(impression_ids)
    if ids.shape != wanted.shape or not (ids == wanted).all():  # another order: align
        order = np.argsort(ids, kind="stable")
        at = np.minimum(np.searchsorted(ids, wanted, sorter=order), len(ids) - 1)
        found = order[at]
        missing = ids[found] != wanted
        if missing.any():
            raise SubmissionError(path, None, f"no line for impression {wanted[missing][0]}")
        flat = take_rows(lengths_to_offsets(counts), flat, found)
        counts = counts[found]
    wrong = np.flatnonzero(counts != np.diff(offsets))
    if len(wrong):
        k = wrong[0]
        raise SubmissionError(
            path,
            None,
            f"impression {wanted[k]} has {counts[k]} labels for {np.diff(offsets)[k]} candidates",
        )
    return flat


def score_files(truth_path: Path | str, prediction_path: Path | str) -> dict[str, float]:
    """Metrics of a prediction file against a truth file (keys of ``impression_metrics``).

    Raises :class:`~newsrec.evaluation.submission.SubmissionError`, naming the file and line, when the
    files disagree: another impression id, another number of candidates, ranks that are not
    a permutation of 1..n, or a line missing from either file.
    """
    truth_path, prediction_path = Path(truth_path), Path(prediction_path)
    all_ranks: list[int] = []
    all_labels: list[int] = []
    sizes: list[int] = []
    pairs = zip_longest(iter_truth(truth_path), iter_prediction(prediction_path))
    for truth, prediction in pairs:
        if prediction is None:
            raise SubmissionError(
                prediction_path, None, f"ends early: no line for truth line {truth[0]}"
            )
        line_no, impression_id, ranks = prediction
        if truth is None:
            raise SubmissionError(prediction_path, line_no, "extra line: the truth has ended")
        truth_line, truth_id, labels = truth
        if impression_id != truth_id:
            raise SubmissionError(
                prediction_path,
                line_no,
                f"impression id {impression_id}, but {truth_path}:{truth_line} has {truth_id}",
            )
        n = len(labels)
        if len(ranks) != n:
            raise SubmissionError(
                prediction_path,
                line_no,
                f"{len(ranks)} ranks for impression {impression_id}, which has {n} candidates "
                f"({truth_path}:{truth_line})",
            )
        if n and (min(ranks) != 1 or max(ranks) != n or len(set(ranks)) != n):
            raise SubmissionError(
                prediction_path, line_no, f"ranks are not a permutation of 1..{n}: {ranks}"
            )
        all_ranks.extend(ranks)
        all_labels.extend(labels)
        sizes.append(n)

    # float32 1/rank keeps distinct ranks distinct and lets impression_metrics sort once.
    scores = (1.0 / np.asarray(all_ranks, dtype=np.float64)).astype(np.float32)
    # Impressions are told apart by line, not id: a repeated id must not merge two lines.
    impression = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    return impression_metrics(scores, np.asarray(all_labels, dtype=np.int64), impression)


def format_scores(scores: dict[str, float]) -> str:
    """The metrics as the competition prints them, 4 decimals, plus the skipped count."""
    lines = [f"{_DISPLAY[name]:<8} {scores[name]:.4f}" for name in METRICS]
    lines.append(
        f"{scores['num_impressions']} impressions; {scores['auc_skipped']} without AUC "
        "(a single class: no click or all clicked)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m newsrec.evaluation.score",
        description="Score a MIND prediction.txt/prediction.zip against the truth.",
    )
    parser.add_argument("truth", type=Path, help="truth file ('<id> [0,1,...]') or behaviors.tsv")
    parser.add_argument("prediction", type=Path, help="prediction.txt or prediction.zip")
    parser.add_argument("--out", type=Path, help="also write the metrics to this JSON file")
    args = parser.parse_args(argv)
    return run_scorer(
        lambda: score_files(args.truth, args.prediction), format_scores, args.out, SubmissionError
    )


def run_scorer(
    score: Callable[[], dict],
    show: Callable[[dict], str],
    out: Path | str | None,
    errors: type[Exception],
) -> int:
    """The end of a scorer's command line (this one's and EB-NeRD's): the scores printed, and
    written as JSON to `out` when given; a bad file (`errors`) is one line on stderr, no
    traceback. Returns the exit status."""
    try:
        scores = score()
    except errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(show(scores))
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # NaN (no impression qualified) is not JSON: write null.
        clean = {
            k: None if isinstance(v, float) and math.isnan(v) else v for k, v in scores.items()
        }
        out.write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
