"""EB-NeRD's CodaBench submission: `predictions.zip` holding `predictions.txt`, and its scorer.

The format, as the toolkit writes it (ebrec `utils/_python.py`: `write_submission_file`,
`zip_submission_file`, `rank_predictions_by_score`): one line per impression of the test
set's behaviors.parquet, in file order, beyond-accuracy impressions included (their
published id is 0): `<impression id> [r1,r2,...,rn]`, ri the rank (1 = most likely clicked)
of the i-th in-view article, no spaces in the brackets; the file zipped as predictions.zip.

The scorer reads the file back against the test set's clicks (`ebnerd_testset_gt`, or the
synthetic world's copy of it) line by line, as CodaBench's does: the same impression id on
the same line, as many ranks as in-view articles, ranks a permutation of 1..n. Metrics follow
the toolkit's definitions (ebrec `evaluation/metrics/_ranking.py` and `metrics_protocols.py`),
per impression, then the plain mean: AUC (sklearn's roc_auc_score: ties count one half),
MRR = sum(y / rank) / sum(y), nDCG@k = DCG@k / ideal DCG@k with gains 2^y - 1 and
discounts log2(rank + 1). Each candidate scores 1 / rank. Beyond-accuracy impressions carry
no clicks and are not scored for accuracy; an impression with one class only has no AUC.

    python -m newsrec.evaluation.ebnerd_submission TRUTH_BEHAVIORS PREDICTIONS [--out f.json]
"""

from __future__ import annotations

import argparse
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from newsrec.constants import METRICS
from newsrec.data.ebnerd.reader import read_behaviors
from newsrec.data.mind import DataError
from newsrec.evaluation.score import run_scorer
from newsrec.utils.io import atomic_path
from newsrec.utils.progress import progress_bar

PREDICTIONS_TXT = "predictions.txt"  # the toolkit's write_submission_file default
PREDICTIONS_ZIP = "predictions.zip"  # its zip_submission_file: the .txt's name, .zip


class EbnerdSubmissionError(DataError):
    """A predictions file that does not match the truth; names the file and the line."""


def write_predictions(
    path: Path | str,
    impression_ids: np.ndarray,
    ranks: np.ndarray,
    offsets: np.ndarray,
    progress: bool = False,
    chunk: int = 20_000,
) -> Path:
    """predictions.zip (at `path`, or in the folder `path`), written atomically."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".zip":
        path = path / PREDICTIONS_ZIP
    ids, offsets = np.asarray(impression_ids), np.asarray(offsets, dtype=np.int64)
    with (
        progress_bar(progress) as bar,
        atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open(PREDICTIONS_TXT, "w") as txt,
    ):
        task = bar.add_task(f"writing {path.name}", total=len(ids))
        for first in range(0, len(ids), chunk):
            last = min(first + chunk, len(ids))
            base = int(offsets[first])
            flat = ranks[base : offsets[last]].tolist()
            bounds = (offsets[first : last + 1] - base).tolist()
            lines = (
                f"{i} [{','.join(map(str, flat[bounds[k] : bounds[k + 1]]))}]\n"
                for k, i in enumerate(ids[first:last].tolist())
            )
            txt.write("".join(lines).encode("utf-8"))
            bar.advance(task, last - first)
    return path


def read_predictions(path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(impression ids [I], offsets [I + 1], ranks [sum]) of predictions.zip or .txt."""
    path = Path(path)
    if not path.is_file():
        raise EbnerdSubmissionError(f"{path}: no such file")
    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".txt")]
            if len(names) != 1:
                raise EbnerdSubmissionError(f"{path}: the zip must hold one .txt, not {names}")
            data = zf.read(names[0])
    try:
        table = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(column_names=["id", "ranks"]),
            parse_options=pcsv.ParseOptions(delimiter=" ", quote_char=False),
            convert_options=pcsv.ConvertOptions(
                column_types={"id": pa.int64(), "ranks": pa.string()}
            ),
        )
        inner = pc.utf8_slice_codeunits(table["ranks"], 1, -1)
        lists = pc.split_pattern(inner, ",")
        ranks = pc.cast(pc.list_flatten(lists), pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise EbnerdSubmissionError(
            f"{path}: not lines of '<impression id> [r1,r2,...]' ({err})"
        ) from None
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return table["id"].to_numpy(), offsets, ranks


def read_truth(path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(impression ids, offsets, labels int8, beyond-accuracy bool) of a labeled test
    behaviors.parquet (ebnerd_testset_gt), in file order; labels as the toolkit makes them
    (an in-view article is a click when its id is among article_ids_clicked)."""
    impressions = read_behaviors(Path(path), labeled=True)
    n = len(impressions.impression_id)
    labels = impressions.labels
    beyond = impressions.beyond_accuracy
    beyond = np.zeros(n, bool) if beyond is None else beyond
    return impressions.impression_id, impressions.inview.offsets, labels, beyond


def metrics_from_ranks(ranks: np.ndarray, labels: np.ndarray, offsets: np.ndarray) -> dict:
    """The toolkit's AUC, MRR, nDCG@5, nDCG@10 of impressions ranked `ranks` (a permutation
    of 1..n each, no ties), per impression, then the mean over the impressions that qualify."""
    n = np.diff(offsets)
    owner = np.repeat(np.arange(len(n)), n)
    y, r = labels.astype(np.float64), ranks.astype(np.float64)
    positives = np.bincount(owner, weights=y, minlength=len(n))
    negatives = n - positives
    has_click = positives > 0
    out = {"num_impressions": int(len(n)), "auc_skipped": int((has_click & (negatives == 0)).sum())}
    # AUC: pairs (click, non-click) in the right order; a click at rank r is above n - r items
    above = np.bincount(owner, weights=y * (n[owner] - r), minlength=len(n))
    correct = above - positives * (positives - 1) / 2
    has_auc = has_click & (negatives > 0)
    out["auc"] = float(np.mean(correct[has_auc] / (positives * negatives)[has_auc]))
    mrr = np.bincount(owner, weights=y / r, minlength=len(n))
    out["mrr"] = float(np.mean(mrr[has_click] / positives[has_click]))
    for k in (5, 10):
        gain = np.bincount(owner, weights=y * (r <= k) / np.log2(r + 1), minlength=len(n))
        ideal_count = np.minimum(positives, k).astype(np.int64)
        ideal = np.cumsum(np.concatenate([[0.0], 1 / np.log2(np.arange(2, k + 2))]))[ideal_count]
        out[f"ndcg@{k}"] = float(np.mean(gain[has_click] / ideal[has_click]))
    return out


def score(truth_path: Path | str, predictions_path: Path | str) -> dict:
    """The metrics of a predictions file against the test set's clicks (module docstring)."""
    truth_ids, truth_offsets, labels, beyond = read_truth(truth_path)
    ids, offsets, ranks = read_predictions(predictions_path)
    where = Path(predictions_path)
    if len(ids) != len(truth_ids):
        raise EbnerdSubmissionError(
            f"{where}: {len(ids)} lines, the truth {truth_path} has {len(truth_ids)} impressions"
        )
    bad = np.flatnonzero(ids != truth_ids)
    if len(bad):
        k = int(bad[0])
        raise EbnerdSubmissionError(
            f"{where}:{k + 1}: impression id {ids[k]}, the truth has {truth_ids[k]} on that line"
        )
    lengths, truth_lengths = np.diff(offsets), np.diff(truth_offsets)
    bad = np.flatnonzero(lengths != truth_lengths)
    if len(bad):
        k = int(bad[0])
        raise EbnerdSubmissionError(
            f"{where}:{k + 1}: {lengths[k]} ranks for {truth_lengths[k]} in-view articles"
        )
    owner = np.repeat(np.arange(len(ids)), lengths)
    order = np.lexsort((ranks, owner))
    expected = np.arange(len(ranks)) - np.repeat(offsets[:-1], lengths) + 1
    if (ranks[order] != expected).any():
        k = int(owner[order][np.flatnonzero(ranks[order] != expected)[0]])
        raise EbnerdSubmissionError(f"{where}:{k + 1}: the ranks are not a permutation of 1..n")
    keep = ~beyond
    keep_pairs = np.repeat(keep, lengths)
    kept_offsets = np.concatenate([[0], np.cumsum(lengths[keep])])
    return metrics_from_ranks(ranks[keep_pairs], labels[keep_pairs], kept_offsets)


class EbnerdSubmission:
    """What predicting EB-NeRD's test set writes and scores (newsrec.evaluation.predict)."""

    def __init__(self, behaviors: Path, truth: Path | None) -> None:
        self.behaviors, self.truth = behaviors, truth

    @classmethod
    def of(cls, paths) -> EbnerdSubmission | None:
        """For a datamodule's SplitPaths: None unless the data is EB-NeRD with a test set."""
        if getattr(paths, "layout", "mind") != "ebnerd" or paths.test is None:
            return None
        test = Path(paths.test)
        truth = test.parent.with_name(test.parent.name + "_gt") / "test" / "behaviors.parquet"
        return cls(test / "behaviors.parquet", truth if truth.is_file() else None)

    def write(self, out: Path, ranks: np.ndarray, offsets: np.ndarray, progress: bool) -> Path:
        """predictions.zip in `out`, with the published impression ids (0: beyond-accuracy)."""
        ids = pq.read_table(self.behaviors, columns=["impression_id"])["impression_id"]
        return write_predictions(out, ids.to_numpy(), ranks, offsets, progress=progress)

    def hidden_labels(self, offsets: np.ndarray) -> np.ndarray | None:
        """The test set's clicks aligned with its candidates, where the truth is at hand."""
        if self.truth is None:
            return None
        _, truth_offsets, labels, _ = read_truth(self.truth)
        if not np.array_equal(truth_offsets, offsets):
            raise EbnerdSubmissionError(f"{self.truth} does not match {self.behaviors}")
        return labels


def format_scores(scores: dict) -> str:
    return "  ".join(f"{name} {scores[name]:.4f}" for name in METRICS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("truth", help="the test set's labeled behaviors.parquet")
    parser.add_argument("predictions", help="predictions.zip or predictions.txt")
    parser.add_argument("--out", help="also write the scores as JSON here")
    args = parser.parse_args(argv)
    out = args.out or None  # --out "" writes nothing
    return run_scorer(lambda: score(args.truth, args.predictions), format_scores, out, DataError)


if __name__ == "__main__":
    raise SystemExit(main())
