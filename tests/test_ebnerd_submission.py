"""EB-NeRD's test set end to end: NRMSDocVec trains on the synthetic EB-NeRD world, writes
predictions.zip, and the scorer reading it back gives the metrics the run printed. Also the
start-up refusal of a model that needs a feature the data lacks, and the scorer's checks."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from newsrec.data.ebnerd.synthetic import SyntheticEbnerdSource
from newsrec.data.features import MissingFeatureError, check_features
from newsrec.data.info import DataInfo
from newsrec.evaluation.ebnerd_submission import (
    EbnerdSubmissionError,
    read_predictions,
    read_truth,
    score,
    write_predictions,
)
from newsrec.models.docvec import DocumentVectorNewsEncoder
from newsrec.train import train

SMALL_DOCVEC = [
    "model=nrms_docvec",
    "model.news_encoder.units=[32]",
    "model.news_encoder.dim=32",
    "model.user_encoder.heads=4",
    "model.user_encoder.query_dim=16",
]
TINY = ["data=synthetic_ebnerd", "data.source.preset=synthetic_ebnerd_tiny"]


def test_docvec_run_writes_predictions_the_scorer_reads_back(train_config, data_dir, tmp_path):
    # the default logger too: its end-of-fit pictures name news by their article ids
    metrics = train(train_config(*TINY, *SMALL_DOCVEC, output_dir=tmp_path / "run"))
    assert metrics["test_split"] == "test" and metrics["val_split"] == "dev"
    target = tmp_path / "run" / "predictions.zip"
    assert metrics["prediction"] == str(target)
    with zipfile.ZipFile(target) as zf:
        assert zf.namelist() == ["predictions.txt"]
        lines = zf.read("predictions.txt").decode().splitlines()
    # every test impression, in file order; the 20 beyond-accuracy ones last, with id 0
    assert len(lines) == 420 and all(line.startswith("0 [") for line in lines[-20:])
    assert sorted(map(int, lines[-1][3:-1].split(","))) == list(range(1, 11))
    world = next(data_dir.glob("synthetic/synthetic_ebnerd_tiny-*"))
    truth = world / "ebnerd_testset_gt" / "test" / "behaviors.parquet"
    scored = score(truth, target)
    for name in ("auc", "mrr", "ndcg@5", "ndcg@10"):
        assert scored[name] == pytest.approx(metrics[f"test/{name}"], abs=1e-6), name
    assert metrics["test/oracle_auc"] > metrics["test/auc"] - 0.05  # the oracle is reported
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["test/auc"] == pytest.approx(metrics["test/auc"])


def test_a_model_needing_a_missing_feature_is_refused_at_start(train_config, tmp_path):
    with pytest.raises(MissingFeatureError) as err:
        train(train_config(*SMALL_DOCVEC, "~logger", output_dir=tmp_path / "run"))
    message = str(err.value)
    assert "nrms_docvec" in message and "document_vector" in message
    assert "SyntheticSource(preset='synthetic_tiny'" in message
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training


def test_dkn_is_refused_on_ebnerd_for_lack_of_entities():
    with pytest.raises(MissingFeatureError, match="title_entities.*the data EB"):
        check_features(
            ("title", "title_entities"),
            ("title", "abstract", "category", "subcategory", "document_vector"),
            "dkn",
            "EB-NeRD demo",
        )
    check_features(("plm_title", "plm_title_mask", "row"), ("title",), "nrms_plm", "x")


def test_predictions_round_trip_and_the_scorers_line_checks(tmp_path):
    ids = np.array([7, 0, 9])
    offsets = np.array([0, 2, 5, 7])
    ranks = np.array([2, 1, 3, 1, 2, 1, 2])
    path = write_predictions(tmp_path, ids, ranks, offsets)
    assert path.name == "predictions.zip"
    got_ids, got_offsets, got_ranks = read_predictions(path)
    assert got_ids.tolist() == [7, 0, 9] and got_offsets.tolist() == offsets.tolist()
    assert got_ranks.tolist() == ranks.tolist()
    with zipfile.ZipFile(path) as zf:
        assert zf.read("predictions.txt").decode() == "7 [2,1]\n0 [3,1,2]\n9 [1,2]\n"


def test_scorer_names_the_line_that_does_not_match(tmp_path):
    source = SyntheticEbnerdSource("synthetic_ebnerd_tiny")
    paths = source.prepare(tmp_path / "root", progress=False)
    truth = source.path(tmp_path / "root") / "ebnerd_testset_gt" / "test" / "behaviors.parquet"
    ids, offsets, _, _ = read_truth(truth)
    ranks = np.concatenate([np.arange(1, n + 1) for n in np.diff(offsets)])
    assert score(truth, write_predictions(tmp_path / "ok.zip", ids, ranks, offsets))["auc"] > 0
    swapped = ids.copy()
    swapped[[3, 4]] = swapped[[4, 3]]
    with pytest.raises(EbnerdSubmissionError, match=r"ok2.zip:4: impression id"):
        score(truth, write_predictions(tmp_path / "ok2.zip", swapped, ranks, offsets))
    bad = ranks.copy()
    bad[offsets[5]] = bad[offsets[5] + 1]  # a rank twice in impression 6
    with pytest.raises(EbnerdSubmissionError, match=r":6: the ranks are not a permutation"):
        score(truth, write_predictions(tmp_path / "bad.zip", ids, bad, offsets))
    assert paths.has_truth


def test_docvec_batch_statistics_skip_zero_vectors():
    torch.manual_seed(0)
    data = DataInfo(5, 1, 1, 1, 1, 10, document_dim=8)
    encoder = DocumentVectorNewsEncoder(data, units=(16,), dim=4, dropout=0.0)
    real = torch.randn(6, 8)
    padded = torch.cat([real, torch.zeros(10, 8)])  # the engine pads with row 0 (all zeros)
    encoder.train()
    alone = encoder({"document_vector": real})
    with_padding = encoder({"document_vector": padded})[:6]
    torch.testing.assert_close(alone, with_padding)
    encoder.eval()
    assert encoder({"document_vector": padded}).shape == (16, 4)
    assert encoder.features == ("document_vector",)
