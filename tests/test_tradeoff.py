"""The trade-off report of a re-ranker sweep and the results-by-slice section of the
comparison report, from hand-written metrics.json files."""

from __future__ import annotations

import csv
import json

from newsrec.report import build_report
from newsrec.report.slices import SLICES_CSV
from newsrec.report.tradeoff import build_tradeoff


def _write(path, metrics: dict) -> None:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(metrics))


def test_the_tradeoff_report_has_a_row_per_reranker_and_weight(tmp_path):
    for i, (name, weight, ndcg, ild) in enumerate(
        [("mmr", 0.4, 0.40, 0.9), ("mmr", 0.0, 0.45, 0.8), ("xquad", 0.2, 0.44, 0.85)]
    ):
        run = {"rerank": name, "rerank_weight": weight, "test/ndcg@10": ndcg, "test/auc": 0.6}
        _write(tmp_path / str(i), {**run, "test/diversity_vector@10": ild, "checkpoint": "c.ckpt"})
    _write(tmp_path / "other", {"model": "nrms", "test/auc": 0.6})  # no re-ranker: left out
    markdown = build_tradeoff(tmp_path).read_text()
    rows = list(csv.DictReader((tmp_path / "tradeoff.csv").open()))
    assert [(r["rerank"], r["weight"], r["ndcg@10"]) for r in rows] == [
        ("mmr", "0.0", "0.45"),
        ("mmr", "0.4", "0.4"),
        ("xquad", "0.2", "0.44"),
    ]
    assert rows[1]["diversity_vector@10"] == "0.9" and rows[1]["calibration_category@10"] == ""
    assert "| mmr | 0.4 | 0.4000 | 0.6000 | 0.9000 |" in markdown
    assert (tmp_path / "tradeoff.png").stat().st_size > 1000


def test_the_comparison_report_shows_results_by_slice(tmp_path):
    for seed, auc in ((1, 0.6), (2, 0.7)):
        _write(
            tmp_path / f"nrms_{seed}",
            {
                "model": "nrms",
                "data": "synthetic_tiny",
                "seed": seed,
                "test/auc": 0.65,
                "test/slice/history_0/auc": auc,
                "test/slice/history_0/ndcg@10": 0.3,
                "test/slice/history_0/impressions": 19.0,
            },
        )
    markdown = build_report(tmp_path).read_text()
    assert "## Results by slice" in markdown
    assert "| synthetic_tiny | nrms | 0.6500 / 0.3000 |" in markdown  # the mean of the seeds
    assert "history_0 19" in markdown
    rows = list(csv.DictReader((tmp_path / SLICES_CSV).open()))
    assert rows[0]["slice"] == "history_0" and abs(float(rows[0]["auc"]) - 0.65) < 1e-12
