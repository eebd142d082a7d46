"""Every preset computes what it computed before the engine was separated from the models:
scores of fixed batches in float64, saved from the code of 2026-12-04 before the change
(tests/data/preset_scores.pt; the script that wrote them is in its docstring's commit,
`c6c75d1`). Both engines give them, so a change to either that moves a score fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from newsrec.data.datamodule import MindDataModule
from newsrec.data.synthetic import SyntheticSource

from conftest import SELF_CONTAINED, build_recommender

GOLDEN = torch.load(Path(__file__).parent / "data" / "preset_scores.pt", weights_only=False)


@pytest.fixture(scope="module")
def dm(data_dir):
    dm = MindDataModule(SyntheticSource("synthetic_tiny"), data_dir=str(data_dir))
    dm.setup("fit")
    return dm


def test_every_self_contained_preset_has_its_reference():
    assert set(GOLDEN["scores"]) == set(SELF_CONTAINED)
    assert GOLDEN["one_word_news"] in GOLDEN["train_batch"]["candidates"]  # a one-word title
    assert not GOLDEN["train_batch"]["history_mask"][1].any()  # and an empty history


@pytest.mark.parametrize("engine", ["plain", "fast"])
@pytest.mark.parametrize("name", sorted(GOLDEN["scores"]))
def test_scores_equal_those_before_the_engine_was_separated(dm, name, engine):
    model = build_recommender(name, dm.info, seed=0, engine=engine).double().eval()
    table = dm.news_table()
    one_word = GOLDEN["one_word_news"]  # cut to its first word, as when the scores were saved
    table["title"][one_word, 1:] = 0
    table["title_entities"][one_word, 1:] = 0
    expected = GOLDEN["scores"][name]
    evaluation = GOLDEN["eval_batch"]
    with torch.no_grad():
        train = model(GOLDEN["train_batch"], table)
        scores = model.score_impressions(evaluation, table)
    torch.testing.assert_close(train, expected["train"], rtol=1e-9, atol=1e-9)
    real = evaluation["candidate_mask"]
    torch.testing.assert_close(scores[real], expected["eval"][real], rtol=1e-9, atol=1e-9)
