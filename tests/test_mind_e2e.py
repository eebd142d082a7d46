"""MIND end to end, offline: the real data configs on MIND-shaped fixture zips.

What a user of `data=mind_large` relies on, on files laid out exactly as the MIND mirrors
serve them (`MINDlarge_{train,dev,test}.zip`, `glove.840B.300d.zip`) but served from
127.0.0.1: the first `train.py` downloads, extracts, preprocesses, trains on every train day,
keeps the checkpoint best on dev and writes the leaderboard submission for test (MIND paper);
`eval.py data.test_split=test` writes the same submission, which the scorer accepts; the
GloVe rows reach the model; and an already unzipped copy (`data.source.data_dir`) gives the
same run with no server at all. Any connection beyond loopback fails (`no_internet`).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from newsrec.constants import METRICS
from newsrec.data.mind import tokenize
from newsrec.evaluate import evaluate
from newsrec.evaluation.score import score_files
from newsrec.train import train

from conftest import SMALL_NRMS, make_config
from fixtures_mind import (  # noqa: F401  (no_internet is a fixture)
    make_mind_zip,
    no_internet,
    serve_folder,
    write_mind_split,
    write_split_after_train,
)

pytestmark = pytest.mark.usefixtures("no_internet")

METRIC_KEYS = ("auc", "mrr", "ndcg@5", "ndcg@10")
GLOVE_DIM = 32
GLOVE_ZIP, GLOVE_TXT = "glove.840B.300d.zip", "glove.840B.300d.txt"
# write_mind_split spaces impressions 97 minutes apart from 11/14/2019 00:05, so 24 of them
# span two days (15 on the 14th, 9 on the 15th): all are trained on.
TRAIN_IMPRESSIONS = 24


def _strip_labels(labeled: Path, unlabeled: Path) -> None:
    """A copy of a labeled split whose impressions are bare news IDs (MIND-large test)."""
    shutil.copytree(labeled, unlabeled)
    rows = []
    for line in (labeled / "behaviors.tsv").read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        cols[4] = " ".join(token.rsplit("-", 1)[0] for token in cols[4].split())
        rows.append("\t".join(cols))
    (unlabeled / "behaviors.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def _write_glove(path: Path, train_news: Path) -> dict:
    """A 32-d GloVe text in 840B's format for the training title words, minus one word.

    One word appears only capitalised (840B is cased, the vocabulary lowercase), one not at
    all (it must get a random row), plus a few words outside the vocabulary.
    """
    titles = [line.split("\t")[3] for line in train_news.read_text(encoding="utf-8").splitlines()]
    words = sorted({token for title in titles for token in tokenize(title) if token.isalpha()})
    absent, cased = words[0], words[1]
    rng = np.random.default_rng(7)
    lines = []
    for word in [*words[1:], "zebra", "quantum", "ukulele"]:
        vector = " ".join(f"{v:.4f}" for v in rng.normal(0.0, 0.5, GLOVE_DIM))
        lines.append(f"{word.capitalize() if word == cased else word} {vector}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    vectors = {}
    for line in lines:
        word, *values = line.split(" ")
        vectors[word.lower()] = np.array(values, dtype=np.float32)
    return {"vectors": vectors, "absent": absent, "cased": cased}


def _served_mind(root: Path) -> dict:
    """MINDlarge-shaped splits, unzipped under root/unzipped and zipped under root/web."""
    unzipped, web, scratch = root / "unzipped", root / "web", root / "scratch"
    train_dir = write_mind_split(
        unzipped / "MINDlarge_train",
        num_news=16,
        num_users=5,
        num_impressions=TRAIN_IMPRESSIONS,
        seed=1,
    )
    # dev and test bring news unseen in train (N17..N20) and a user unseen in train (U6, U7).
    write_split_after_train(
        unzipped / "MINDlarge_dev", 1, num_news=20, num_users=6, num_impressions=8
    )
    truth_dir = write_split_after_train(
        scratch / "test_labeled", 2, num_news=20, num_users=7, num_impressions=10
    )
    _strip_labels(truth_dir, unzipped / "MINDlarge_test")
    for split in ("train", "dev", "test"):
        make_mind_zip(unzipped / f"MINDlarge_{split}", web / f"MINDlarge_{split}.zip")
    glove_txt = scratch / GLOVE_TXT
    glove = _write_glove(glove_txt, train_dir / "news.tsv")
    with zipfile.ZipFile(web / GLOVE_ZIP, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(glove_txt, GLOVE_TXT)
    return {
        "unzipped": unzipped,
        "web": web,
        "truth": truth_dir / "behaviors.tsv",
        "glove": glove,
        "glove_zip": web / GLOVE_ZIP,
    }


def _overrides(*extra: str) -> list[str]:
    return ["trainer=cpu", "trainer.max_epochs=1", "data.batch_size=8", *SMALL_NRMS, *extra]


@pytest.fixture(scope="module")
def _shared() -> dict:
    return {}


@pytest.fixture
def mind_run(no_internet, _shared, tmp_path_factory) -> dict:  # noqa: F811
    """Download + train + test on dev, then eval.py on the unlabeled test split; run once.

    Function-scoped so that the network guard is active while it runs, cached for the module
    so that the run is made only once.
    """
    if _shared:
        return _shared
    root = tmp_path_factory.mktemp("mind_e2e")
    files = _served_mind(root)
    data_dir = root / "data"
    with serve_folder(files["web"]) as server:
        mirror = f"data.source.mirrors=['{server.url}/{{name}}']"
        cfg = make_config(
            "train",
            _overrides(
                "data=mind_large",
                mirror,
                "embedding=glove_840b",
                f"embedding.dim={GLOVE_DIM}",
                f"embedding.mirrors=['{server.url}/{{name}}']",
            ),
            data_dir,
            root / "train_run",
        )
        metrics = train(cfg)
        requests_after_train = list(server.requests)
        eval_cfg = make_config(
            "eval",
            [
                "data=mind_large",
                mirror,
                "data.test_split=test",
                "trainer=cpu",
                f"ckpt_path={metrics['best_checkpoint']}",
            ],
            data_dir,
            root / "eval_run",
        )
        submission = evaluate(eval_cfg)
        requests_after_eval = list(server.requests)
    _shared.update(
        files,
        data_dir=data_dir,
        metrics=metrics,
        submission=submission,
        eval_dir=root / "eval_run",
        requests_after_train=requests_after_train,
        requests_after_eval=requests_after_eval,
        root=root,
    )
    return _shared


def test_first_run_downloads_extracts_trains_and_tests_on_dev(mind_run):
    fetched = sorted(
        path for method, path, _ in mind_run["requests_after_train"] if method == "GET"
    )
    assert fetched == sorted(
        [f"/MINDlarge_{s}.zip" for s in ("train", "dev", "test")] + [f"/{GLOVE_ZIP}"]
    )
    mind = mind_run["data_dir"] / "mind"
    for split in ("train", "dev", "test"):
        for name in ("news.tsv", "behaviors.tsv"):
            unzipped = mind_run["unzipped"] / f"MINDlarge_{split}" / name
            assert (mind / f"MINDlarge_{split}" / name).read_bytes() == unzipped.read_bytes()
    metrics = mind_run["metrics"]
    assert metrics["data"] == "large" and metrics["epochs"] == 1
    assert Path(metrics["best_checkpoint"]).is_file()
    # The MIND paper's protocol: every train day trained on, dev validates, test = leaderboard.
    assert metrics["val_split"] == "dev" and metrics["test_split"] == "test"
    behaviors = (mind_run["unzipped"] / "MINDlarge_train" / "behaviors.tsv").read_text()
    rows = [line.split("\t") for line in behaviors.splitlines()]
    assert metrics["train_impressions"] == len(rows) == TRAIN_IMPRESSIONS
    clicks = sum(c.endswith("-1") for r in rows for c in r[4].split())
    # Clicks of impressions without a non-click cannot form a sample: counted, not hidden.
    assert metrics["train_samples"] + metrics["train_clicks_dropped"] == clicks
    for key in METRIC_KEYS:  # the best checkpoint's dev metrics
        assert 0.0 <= metrics[f"val/{key}"] <= 1.0
        assert "val/oracle_" + key not in metrics  # real MIND has no truth to bound it
        assert f"test/{key}" not in metrics  # MIND-large test has no labels
    assert metrics["val/auc"] == pytest.approx(metrics["val/auc_best"], abs=1e-6)
    # train.py ends with the leaderboard submission for test, as eval.py writes it.
    prediction = mind_run["root"] / "train_run" / "prediction.zip"
    assert Path(metrics["prediction"]) == prediction
    with (
        zipfile.ZipFile(prediction) as zf,
        zipfile.ZipFile(mind_run["eval_dir"] / "prediction.zip") as ev,
    ):
        assert zf.read("prediction.txt") == ev.read("prediction.txt")
    # eval.py found everything on disk: not one more request.
    assert mind_run["requests_after_eval"] == mind_run["requests_after_train"]


def test_eval_on_the_unlabeled_test_split_writes_a_submission_the_scorer_accepts(mind_run):
    prediction = mind_run["eval_dir"] / "prediction.zip"
    assert Path(mind_run["submission"]["prediction"]) == prediction
    # no labels, so no accuracy; the lists' beyond-accuracy metrics need none
    assert not any(f"test/{name}" in mind_run["submission"] for name in METRICS)
    assert "test/coverage@10" in mind_run["submission"]
    with zipfile.ZipFile(prediction) as zf:
        assert zf.namelist() == ["prediction.txt"]
        lines = zf.read("prediction.txt").decode().splitlines()
    behaviors = (mind_run["unzipped"] / "MINDlarge_test" / "behaviors.tsv").read_text()
    impressions = [line.split("\t") for line in behaviors.splitlines()]
    assert len(lines) == len(impressions)
    for line, cols in zip(lines, impressions, strict=True):
        impression_id, ranks = line.split(" ")
        assert impression_id == cols[0]
        assert " " not in ranks and ranks[0] == "[" and ranks[-1] == "]"
        n = len(cols[4].split())
        assert sorted(int(r) for r in ranks[1:-1].split(",")) == list(range(1, n + 1))
    scores = score_files(mind_run["truth"], prediction)
    assert scores["num_impressions"] == len(impressions)
    for key in METRIC_KEYS:
        assert 0.0 <= scores[key] <= 1.0


def test_glove_vectors_initialise_the_word_embedding(mind_run):
    glove = mind_run["glove"]
    checkpoint = torch.load(mind_run["metrics"]["best_checkpoint"], weights_only=False)
    words = checkpoint["newsrec"]["vocab"]["words"]
    cached = list((mind_run["data_dir"] / "cache").glob("embedding-*.npy"))
    assert len(cached) == 1
    initial = np.load(cached[0])
    assert initial.shape == (len(words), GLOVE_DIM)
    assert not initial[0].any()  # padding
    found = [w for w in words if w in glove["vectors"]]
    assert glove["cased"] in found and len(found) == len(words) - 3  # <pad>, <unk>, absent
    for word in found:  # the capitalised-only word through 840B's lowercase fallback too
        np.testing.assert_array_equal(initial[words.index(word)], glove["vectors"][word])
    absent = initial[words.index(glove["absent"])]
    assert absent.any() and not any(np.array_equal(absent, v) for v in glove["vectors"].values())
    # The model started from those rows: one short epoch of Adam at lr 1e-4 moves a weight by
    # about 1e-4 a step, far less than the distance between two GloVe vectors.
    (weight,) = [
        v for k, v in checkpoint["state_dict"].items() if k.endswith("embedding.embedding.weight")
    ]
    np.testing.assert_allclose(weight.numpy(), initial, atol=1e-2)


def test_unzipped_mind_in_data_dir_needs_no_server(mind_run, tmp_path):
    """data.source.data_dir: the same run from folders on disk, with no mirror to fall back on."""
    cfg = make_config(
        "train",
        _overrides(
            "data=mind_large",
            f"data.source.data_dir={mind_run['unzipped']}",
            "data.source.mirrors=[]",
            "embedding=glove_file",
            f"embedding.path={mind_run['glove_zip']}",
        ),
        tmp_path / "data",
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert not (tmp_path / "data" / "mind").exists()  # nothing downloaded or extracted
    for key in METRIC_KEYS:
        assert metrics[f"val/{key}"] == pytest.approx(mind_run["metrics"][f"val/{key}"], abs=1e-6)
    assert (tmp_path / "run" / "prediction.zip").is_file()
