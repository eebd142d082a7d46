"""train.py / eval.py end to end on the tiny synthetic world (CPU, deterministic)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from newsrec.evaluate import evaluate
from newsrec.evaluation.score import score_files
from newsrec.train import train

from conftest import SMALL_NRMS, make_config

ROOT = Path(__file__).resolve().parents[1]
METRIC_KEYS = ["test/auc", "test/mrr", "test/ndcg@5", "test/ndcg@10"]


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """One small NRMS run (2 epochs) shared by the tests that read its outputs."""
    out = tmp_path_factory.mktemp("run")
    cfg = make_config(
        "train",
        ["data=synthetic_tiny", "trainer=cpu", "trainer.max_epochs=2", *SMALL_NRMS],
        data_dir,
        out,
    )
    return out, train(cfg)


def test_train_writes_metrics_json_with_the_oracle(trained):
    out, metrics = trained
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    for key in METRIC_KEYS:
        assert 0.0 <= saved[key] <= 1.0
        oracle = saved[key.replace("test/", "test/oracle_")]
        assert saved[key] <= oracle + 0.05  # no model beats the truth by more than noise
    assert saved["model"] == "nrms" and saved["epochs"] == 2
    assert Path(saved["best_checkpoint"]).is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()


def test_eval_reproduces_the_test_metrics_of_train(trained, data_dir, tmp_path):
    out, metrics = trained
    cfg = make_config(
        "eval",
        ["data=synthetic_tiny", "trainer=cpu", f"ckpt_path={metrics['best_checkpoint']}"],
        data_dir,
        tmp_path,
    )
    again = evaluate(cfg)
    for key in METRIC_KEYS:
        assert again[key] == pytest.approx(metrics[key], abs=1e-6)
    assert json.loads((tmp_path / "metrics.json").read_text())["test/auc"] == again["test/auc"]


def test_the_submission_for_the_unlabeled_split_scores_what_eval_reports(
    trained, data_dir, tiny_paths, tmp_path
):
    _, metrics = trained
    cfg = make_config(
        "eval",
        [
            "data=synthetic_tiny",
            "data.test_split=test",
            "trainer=cpu",
            f"ckpt_path={metrics['best_checkpoint']}",
        ],
        data_dir,
        tmp_path,
    )
    reported = evaluate(cfg)
    prediction = tmp_path / "prediction.zip"
    assert Path(reported["prediction"]) == prediction
    scored = score_files(tiny_paths.test / "truth.txt", prediction)
    for key in METRIC_KEYS:
        assert scored[key.removeprefix("test/")] == pytest.approx(reported[key], abs=1e-9)


def test_tensorboard_holds_scalars_and_hyperparameters(trained):
    out, metrics = trained
    files = list((out / "tensorboard").rglob("events.out.tfevents*"))
    assert files
    tags: set[str] = set()
    plugins: set[str] = set()
    for file in files:
        acc = EventAccumulator(str(file))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
        with contextlib.suppress(KeyError):  # an event file without hyperparameters
            plugins |= set(acc.PluginTagToContent("hparams"))
    assert {"train/loss", "val/auc", "val/mrr", "val/ndcg@10", "lr-Adam"} <= tags
    assert {"test/auc", "test/oracle_auc"} <= tags
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= plugins


def test_tensorboard_shows_what_researchers_compare_and_attention_per_validation(trained):
    """HPARAMS: the model's settings, no `_target_` strings or paths; the word-attention
    picture at each of the 2 validations, not only at the end."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    out, metrics = trained
    hparams, images = {}, []
    for file in (out / "tensorboard").rglob("events.out.tfevents*"):
        acc = EventAccumulator(str(file), size_guidance={"images": 0})
        acc.Reload()
        if "word_attention" in acc.Tags()["images"]:
            images += [e.step for e in acc.Images("word_attention")]
        with contextlib.suppress(KeyError):
            content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
            info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
            hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                       for k, v in info.hparams.items()}  # fmt: skip
    assert hparams["model"] == "nrms" and hparams["engine"] == "fast"
    assert hparams["news_encoder"] == "SelfAttentionNewsEncoder"
    assert hparams["news_encoder/heads"] == 4 and hparams["news_encoder/word_dim"] == 32
    assert hparams["optimizer"] == "Adam" and hparams["optimizer/lr"] == pytest.approx(1e-3)
    assert hparams["data"] == "synthetic_tiny" and hparams["seed"] == 0
    assert hparams["data/train_samples"] == metrics["train_samples"]
    assert hparams["params_without_embeddings"] == metrics["params_without_embeddings"]
    assert not [k for k, v in hparams.items() if "_target_" in k or "newsrec." in str(v)]
    assert not [k for k, v in hparams.items() if str(v).startswith("/")]  # no paths
    assert len(hparams) < 50
    assert len(set(images)) == 2  # one picture per validation (2 epochs)


def test_resumed_run_ends_like_an_uninterrupted_one(trained, data_dir, tmp_path):
    _, uninterrupted = trained
    first = tmp_path / "first"
    base = ["data=synthetic_tiny", "trainer=cpu", *SMALL_NRMS]
    train(make_config("train", [*base, "trainer.max_epochs=1", "test=false"], data_dir, first))
    last = first / "checkpoints" / "last.ckpt"
    resumed = train(
        make_config(
            "train", [*base, "trainer.max_epochs=2", f"ckpt_path={last}"], data_dir, tmp_path / "r"
        )
    )
    for key in [*METRIC_KEYS, "val/auc_best"]:
        assert resumed[key] == pytest.approx(uninterrupted[key], abs=1e-6), key


def test_train_py_command_line(data_dir, tmp_path):
    """The real entry point: Hydra run folder, metrics printed and written."""
    env = {**os.environ, "NEWSREC_DATA_DIR": str(data_dir)}
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "data=synthetic_tiny",
            "trainer.max_epochs=1",
            f"hydra.run.dir={tmp_path}",
            *SMALL_NRMS,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "oracle" in result.stdout and "auc" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics)


def test_word_attention_picture(trained, data_dir, tmp_path):
    import torch

    from newsrec.models.module import NewsRecModule
    from newsrec.serving.visualize import main, word_attention

    _, metrics = trained
    out = tmp_path / "attention.png"
    main(
        [
            metrics["best_checkpoint"],
            "--data",
            "synthetic_tiny",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
        ]
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    module = NewsRecModule.load_from_checkpoint(metrics["best_checkpoint"]).eval()
    title = torch.tensor([[5, 6, 7, 0, 0], [8, 0, 0, 0, 0]])
    with torch.no_grad():
        weights = word_attention(module.recommender.news_encoder, title)
    torch.testing.assert_close(weights.sum(1), torch.ones(2))  # eq. 4: a softmax over words
    assert (weights[title == 0] == 0).all()  # padding gets no attention


@pytest.mark.slow
def test_compiled_run_evaluates_like_eager(data_dir, tmp_path):
    """compile=true trains, and its checkpoint (unchanged keys) scores the same in eager mode."""
    cfg = make_config(
        "train",
        ["data=synthetic_tiny", "trainer=cpu", "trainer.max_epochs=1", "compile=true", *SMALL_NRMS],
        data_dir,
        tmp_path / "compiled",
    )
    compiled = train(cfg)
    eager = evaluate(
        make_config(
            "eval",
            ["data=synthetic_tiny", "trainer=cpu", f"ckpt_path={compiled['best_checkpoint']}"],
            data_dir,
            tmp_path / "eval",
        )
    )
    for key in METRIC_KEYS:
        assert eager[key] == pytest.approx(compiled[key], abs=1e-5), key
