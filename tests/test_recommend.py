"""recommend.py, the Python API (newsrec.load) and the vector export on the tiny synthetic world:
lists are eval.py's order, the API ranks as eval.py does, imperfect input has defined results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import newsrec
from newsrec import build
from newsrec.models.module import NewsRecModule
from newsrec.serving.ranking import news_ids, top_k_lowest_row_on_ties
from newsrec.serving.recommend import RecommendError, recommend
from newsrec.train import train

from conftest import SMALL_NRMS, make_config

ROOT = Path(__file__).resolve().parents[1]


def _train(model: str, data_dir: Path, out: Path, *extra: str) -> str:
    overrides = ["data=synthetic_tiny", "trainer=cpu", "trainer.max_epochs=1", f"model={model}"]
    cfg = make_config(
        "train",
        [*overrides, "~callbacks.progress_bar", "+trainer.limit_train_batches=6", *extra],
        data_dir,
        out,
    )
    return train(cfg)["best_checkpoint"]


@pytest.fixture(scope="module")
def nrms(data_dir, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("nrms")
    return out, _train("nrms", data_dir, out, *SMALL_NRMS)


@pytest.fixture(scope="module")
def npa(data_dir, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("npa")
    return _train("npa", data_dir, out, "test=false", "~logger", "model.news_encoder.word_dim=32")


def behaviors(folder: Path) -> list[dict]:
    """The impressions of a behaviors.tsv as written, for checking against."""
    rows = []
    for line in (folder / "behaviors.tsv").read_text().splitlines():
        impression, user, _, history, candidates = line.split("\t")
        rows.append(
            {
                "impression_id": int(impression),
                "user": user,
                "history": history.split(),
                "candidates": [c.rsplit("-", 1)[0] for c in candidates.split()],
            }
        )
    return rows


def eval_scores(checkpoint: str, data_dir: Path, tmp_path: Path) -> dict[int, np.ndarray]:
    """Impression id -> its candidates' scores, by eval.py's path (what it writes for the
    leaderboard: LightningModule.predict_step over the test split)."""
    cfg = make_config(
        "eval", ["data=synthetic_tiny", f"ckpt_path={checkpoint}"], data_dir, tmp_path
    )
    datamodule = build.checkpoint_datamodule(cfg, Path(checkpoint))
    datamodule.prepare_data()
    datamodule.setup("test")
    module = NewsRecModule.load_from_checkpoint(checkpoint)
    module.use_data(build.module_data(datamodule, ("test",)))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    scores = {}
    for batch in trainer.predict(module, datamodule=datamodule):
        for impression, row, mask in zip(
            batch["impression"], batch["scores"], batch["mask"], strict=True
        ):
            scores[int(impression)] = row[mask].numpy()
    return scores


def eval_order(candidates: list[str], scores: np.ndarray) -> list[str]:
    return [candidates[i] for i in np.argsort(-scores, kind="stable")]


def run_recommend_py(data_dir: Path, run_dir: Path, *overrides: str):
    """`python recommend.py data=synthetic_tiny OVERRIDES`, as a user runs it."""
    env = {**os.environ, "NEWSREC_DATA_DIR": str(data_dir)}
    command = [sys.executable, "recommend.py", "data=synthetic_tiny", *overrides]
    return subprocess.run(
        [*command, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_recommend_py_lists_every_impression_in_eval_order(nrms, data_dir, tiny_paths, tmp_path):
    _, checkpoint = nrms
    result = run_recommend_py(data_dir, tmp_path, f"ckpt_path={checkpoint}", "k=5")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "recommendations.jsonl").read_text().splitlines()]
    truth = behaviors(tiny_paths.test)
    assert [x["impression_id"] for x in lines] == [t["impression_id"] for t in truth]
    reference = eval_scores(checkpoint, data_dir, tmp_path / "eval")
    for line, impression in zip(lines, truth, strict=True):
        assert line["user"] == impression["user"]
        news, scores = line["news"], line["scores"]
        assert len(news) == min(5, len(impression["candidates"])) == len(set(news))
        assert set(news) <= set(impression["candidates"])
        assert scores == sorted(scores, reverse=True)
        expected = reference[line["impression_id"]]
        assert news == eval_order(impression["candidates"], expected)[:5]
        np.testing.assert_allclose(scores, np.sort(expected)[::-1][:5], atol=2e-6)
    metrics = json.loads((tmp_path / "recommendations_metrics.json").read_text())
    assert metrics["impressions"] == len(truth) and 0 < metrics["coverage@5"] <= 1


def test_pool_all_ranks_the_whole_table_and_exports_vectors(nrms, data_dir, tiny_paths, tmp_path):
    _, checkpoint = nrms
    cfg = make_config(
        "recommend",
        ["data=synthetic_tiny", f"ckpt_path={checkpoint}", "k=7", "pool=all", "export=true"],
        data_dir,
        tmp_path,
    )
    summary = recommend(cfg)
    lines = [json.loads(x) for x in (tmp_path / "recommendations.jsonl").read_text().splitlines()]
    table = news_ids(tiny_paths)
    truth = behaviors(tiny_paths.test)
    assert len(lines) == len(truth) == summary["impressions"]
    for line, impression in zip(lines, truth, strict=True):
        assert len(line["news"]) == 7 == len(set(line["news"]))
        assert set(line["news"]) <= set(table[1:])
        read = impression["history"][-50:]  # the history_len most recent clicks
        assert not set(line["news"]) & set(read)  # already read: not listed
        assert line["scores"] == sorted(line["scores"], reverse=True)
    # The matrix-product top-k equals scoring every news of the table as one impression.
    rec = newsrec.load(checkpoint, data="synthetic_tiny", data_dir=data_dir)
    for line, impression in list(zip(lines, truth, strict=True))[:20]:
        pool = [n for n in table[1:] if n not in impression["history"][-50:]]
        full = rec.recommend(impression["history"], pool, k=7)
        assert [n for n, _ in full] == line["news"]
        assert line["news"] == [n for n, _ in rec.recommend(impression["history"], k=7)]

    vectors = tmp_path / "vectors"
    news = np.load(vectors / "news_vectors.npy")
    names = (vectors / "news_ids.txt").read_text().split()
    assert news.shape[0] == len(names) == summary["export"]["news"] and np.isfinite(news).all()
    assert set(names) <= set(table[1:]) and len(set(names)) == len(names)
    users = np.load(vectors / "user_vectors.npy")
    ids = [x.split("\t") for x in (vectors / "user_ids.tsv").read_text().splitlines()]
    assert users.shape == (len(truth), news.shape[1])
    assert ids == [[str(t["impression_id"]), t["user"]] for t in truth]
    # A list's scores are the dot products of the exported vectors (row-aligned by id).
    row = {n: i for i, n in enumerate(names)}
    first = lines[0]
    shown = [(n, s) for n, s in zip(first["news"], first["scores"], strict=True) if n in row]
    assert shown
    np.testing.assert_allclose(
        news[[row[n] for n, _ in shown]] @ users[0], [s for _, s in shown], atol=1e-4
    )
    assert (tmp_path / "tensorboard" / "projector_config.pbtxt").is_file()
    metadata = next((tmp_path / "tensorboard").rglob("metadata.tsv")).read_text().splitlines()
    assert metadata[0] == "news_id\tcategory" and len(metadata) == len(names) + 1


def test_api_ranks_as_eval_py(nrms, data_dir, tiny_paths, tmp_path):
    _, checkpoint = nrms
    reference = eval_scores(checkpoint, data_dir, tmp_path)
    rec = newsrec.load(checkpoint, data="synthetic_tiny", data_dir=data_dir)
    truth = behaviors(tiny_paths.test)[:60]
    batch = rec.recommend_batch(
        [t["history"] for t in truth], [t["candidates"] for t in truth], k=300
    )
    for impression, ranked in zip(truth, batch, strict=True):
        scores = reference[impression["impression_id"]]
        assert [n for n, _ in ranked] == eval_order(impression["candidates"], scores)
        np.testing.assert_allclose([s for _, s in ranked], np.sort(scores)[::-1], atol=2e-6)
    one = truth[3]
    alone = rec.recommend(one["history"], one["candidates"], k=3)  # a batch of one
    assert [n for n, _ in alone] == [n for n, _ in batch[3][:3]]
    np.testing.assert_allclose([s for _, s in alone], [s for _, s in batch[3][:3]], atol=1e-6)

    # news.tsv files tokenised with the checkpoint's vocabulary give the preprocessed table.
    files = [
        tiny_paths.train / "news.tsv",
        tiny_paths.dev / "news.tsv",
        tiny_paths.test / "news.tsv",
    ]
    from_files = newsrec.load(checkpoint, news=files)
    assert from_files.news_ids == rec.news_ids
    for name, column in rec.table.items():
        assert torch.equal(from_files.table[name], column), name


def test_unknown_ids_and_empty_histories_have_defined_rankings(nrms, data_dir, tiny_paths):
    _, checkpoint = nrms
    rec = newsrec.load(checkpoint, data="synthetic_tiny", data_dir=data_dir)
    impression = behaviors(tiny_paths.test)[0]
    candidates = impression["candidates"]
    empty = rec.recommend([], candidates, k=len(candidates))
    assert rec.recommend(["N-unknown", "N-gone"], candidates, k=len(candidates)) == empty
    # An empty history is the learned empty-history user: its scores are the candidates'
    # vectors against that one vector, ranked best first (ties keep the given order).
    with torch.no_grad():
        model = rec.ranker.recommender
        rows = torch.tensor([rec.news_ids.index(n) for n in candidates])
        vectors = rec.ranker.news_vectors[rows].float()
        expected = (vectors @ model.empty_history.float()).tolist()
    order = sorted(range(len(candidates)), key=lambda i: -expected[i])
    assert [n for n, _ in empty] == [candidates[i] for i in order]
    assert [s for _, s in empty] == pytest.approx([expected[i] for i in order], abs=1e-6)
    # Unknown history ids are dropped: the known part of the history decides.
    history = impression["history"]
    assert rec.recommend(["N-unknown", *history], candidates) == rec.recommend(history, candidates)
    # An unknown candidate is scored as the empty news and listed under its own id.
    ranked = rec.recommend(history, [*candidates, "N-new"], k=100)
    assert sorted(n for n, _ in ranked) == sorted([*candidates, "N-new"])
    assert all(np.isfinite(s) for _, s in ranked)
    assert rec.unknown(["N-new", candidates[0]]) == ["N-new"]
    # Whole-table ranking of an empty history: by the fallback vector, best first.
    whole = rec.recommend([], k=3)
    assert len(whole) == 3 and [s for _, s in whole] == sorted((s for _, s in whole), reverse=True)
    with pytest.raises(ValueError, match="news="):
        newsrec.load(checkpoint)


def test_ties_in_the_whole_table_go_to_the_lowest_row():
    scores = torch.tensor([[1.0, 0, 0, 2, 0, 0], [0, 0, 0, 0, 0, 0], [0, 5, 4, 3, 2, 1]])
    values, rows = top_k_lowest_row_on_ties(scores, 3)
    assert rows.tolist() == [[3, 0, 1], [0, 1, 2], [1, 2, 3]]
    assert values.tolist() == [[2, 1, 0], [0, 0, 0], [5, 4, 3]]


@pytest.mark.slow  # an NPA run and a subprocess
def test_models_that_cannot_rank_the_whole_table_say_so(npa, data_dir, tiny_paths, tmp_path):
    cfg = make_config(
        "recommend", ["data=synthetic_tiny", f"ckpt_path={npa}", "pool=all"], data_dir, tmp_path
    )
    with pytest.raises(RecommendError, match="npa: its news vectors depend on the user"):
        recommend(cfg)
    result = run_recommend_py(data_dir, tmp_path, f"ckpt_path={npa}", "pool=all")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "error: pool=all cannot rank with npa" in result.stderr
        and "pool=impression" in result.stderr
    )
    # pool=impression takes the exact path (a news vector per user) and still ranks as eval.py.
    reference = eval_scores(npa, data_dir, tmp_path / "eval")
    rec = newsrec.load(npa, data="synthetic_tiny", data_dir=data_dir)
    for impression in behaviors(tiny_paths.test)[:10]:
        user = impression["user"]
        ranked = rec.recommend(impression["history"], impression["candidates"], k=300, user=user)
        order = eval_order(impression["candidates"], reference[impression["impression_id"]])
        assert [n for n, _ in ranked] == order


def test_the_end_of_a_training_run_writes_pictures_to_tensorboard(nrms):
    out, _ = nrms
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 4})
    events.Reload()
    assert "word_attention" in events.Tags()["images"]
    image = events.Images("word_attention")[0]
    assert image.width > 100 and image.height > 50
    assert (out / "tensorboard" / "projector_config.pbtxt").is_file()
    metadata = next((out / "tensorboard").rglob("metadata.tsv")).read_text().splitlines()
    assert metadata[0] == "news_id\tcategory" and len(metadata) > 10
