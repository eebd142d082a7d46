"""Scores a user relies on: independent of the batch, finite for empty histories, and the
fast evaluation path equal to scoring every impression on its own with the full model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from newsrec.data.datamodule import MindDataModule
from newsrec.data.synthetic import SyntheticSource
from newsrec.models.recommender import Recommender

from conftest import CONF


@pytest.fixture(scope="module")
def dm(data_dir):
    dm = MindDataModule(SyntheticSource("synthetic_tiny"), data_dir=str(data_dir))
    dm.setup("test")
    return dm


def build(name: str, dm, seed: int = 0) -> tuple[Recommender, dict]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}"])
    torch.manual_seed(seed)
    model = Recommender.from_config(cfg.model, dm.info).eval()
    return model, dm.news_table()


def impression_batch(rows: list[dict], extra_history: int = 0, extra_candidates: int = 0):
    """An evaluation-style batch (one history per impression) with optional extra padding."""
    n = max(1, *(len(r["history"]) for r in rows)) + extra_history
    c = max(len(r["candidates"]) for r in rows) + extra_candidates
    batch = {
        "history": torch.zeros(len(rows), n, dtype=torch.long),
        "history_mask": torch.zeros(len(rows), n, dtype=torch.bool),
        "candidates": torch.zeros(len(rows), c, dtype=torch.long),
        "candidate_mask": torch.zeros(len(rows), c, dtype=torch.bool),
        "user": torch.tensor([r["user"] for r in rows]),
        "owner": torch.arange(len(rows)),
    }
    for i, r in enumerate(rows):
        h = torch.as_tensor(r["history"], dtype=torch.long)
        if len(h):
            batch["history"][i, n - len(h) :] = h
            batch["history_mask"][i, n - len(h) :] = True
        batch["candidates"][i, : len(r["candidates"])] = torch.as_tensor(r["candidates"])
        batch["candidate_mask"][i, : len(r["candidates"])] = True
    return batch


def impressions(dm, count: int) -> list[dict]:
    split = dm.data.splits["dev"]
    rows = []
    for i in range(count):
        h = split.history[split.history_offsets[i] : split.history_offsets[i + 1]]
        c = split.candidates[split.candidate_offsets[i] : split.candidate_offsets[i + 1]]
        rows.append({"history": h.tolist(), "candidates": c.tolist(), "user": int(split.user[i])})
    return rows


@pytest.mark.parametrize("name", ["nrms", "npa", "lstur", "dkn"])
def test_a_users_scores_do_not_depend_on_the_batch(dm, name):
    model, table = build(name, dm)
    rows = impressions(dm, 6)
    target = rows[0]
    with torch.no_grad():
        alone = model(impression_batch([target]), table)[0, : len(target["candidates"])]
        crowd = impression_batch(rows[::-1], extra_history=7, extra_candidates=5)
        mixed = model(crowd, table)[len(rows) - 1, : len(target["candidates"])]
    torch.testing.assert_close(mixed, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["nrms", "npa", "lstur", "naml", "dkn", "gru"])
def test_an_empty_history_gives_finite_scores(dm, name):
    model, table = build(name, dm)
    row = {"history": [], "candidates": [1, 2, 3], "user": 0}
    with torch.no_grad():
        scores = model(impression_batch([row]), table)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize(
    "name", ["nrms", "nrms_cnn", "nrms_no_attention", "lstur_con", "naml", "gru", "dkn", "npa"]
)
def test_fast_evaluation_equals_scoring_each_impression_alone(dm, name):
    model, table = build(name, dm)
    loader = dm.test_dataloader()
    batch = next(iter(loader))
    with torch.no_grad():
        if model.cacheable:
            vectors = model.encode_all_news(table)
            # with the user encoder's per-news work done once (as evaluation runs), and without
            fast = model.cached_scores(batch, vectors, model.history_inputs(vectors))
            torch.testing.assert_close(
                fast, model.cached_scores(batch, vectors), rtol=1e-5, atol=1e-6
            )
        else:
            fast = model.exact_scores(batch, table)
        owner = batch["owner"]
        for i in range(0, len(owner), max(1, len(owner) // 12)):
            mask = batch["candidate_mask"][i]
            single = {
                "history": batch["history"][owner[i]][None],
                "history_mask": batch["history_mask"][owner[i]][None],
                "user": batch["user"][owner[i]][None],
                "candidates": batch["candidates"][i][mask][None],
            }
            expected = model(single, table)[0]
            torch.testing.assert_close(fast[i][mask], expected, rtol=1e-4, atol=1e-5)
    # The evaluation batch groups impressions: several share one encoded history.
    assert len(batch["history"]) < len(owner)


def test_distinct_news_are_encoded_once_per_batch(dm):
    model, table = build("nrms", dm)
    seen = []
    model.news_encoder.register_forward_hook(lambda m, args, out: seen.append(out.shape[0]))
    batch = impression_batch(impressions(dm, 8))
    with torch.no_grad():
        model(batch, table)
    rows = torch.cat([batch["history"].ravel(), batch["candidates"].ravel()])
    assert seen == [len(np.unique(rows.numpy()))]
