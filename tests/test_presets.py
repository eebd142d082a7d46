"""Every model preset trains one epoch on the tiny synthetic world and evaluates."""

from __future__ import annotations

import json
import math

import pytest

from newsrec.config import model_presets

from conftest import SELF_CONTAINED

PRESETS = model_presets()


def test_the_presets_are_all_here():
    expected = {"nrms", "npa", "lstur", "lstur_ini", "lstur_con", "naml", "dkn", "gru", "nrms_cnn"}
    expected |= {f"nrms_{a}" for a in ("no_attention", "word_only", "news_only")}
    expected |= {"nrms_additive_only", "nrms_self_only"}
    assert expected <= set(PRESETS)


@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_preset_trains_one_epoch_and_evaluates(name, train_config, tmp_path):
    from newsrec.train import train

    metrics = train(train_config(f"model={name}", "~logger"))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["model"] == name and saved["epochs"] == 1
    for key in ("test/auc", "test/mrr", "test/ndcg@5", "test/ndcg@10"):
        assert math.isfinite(metrics[key]) and 0.0 <= metrics[key] <= 1.0
    assert metrics["test/oracle_auc"] > 0.6


def test_precision_and_loader_workers_follow_the_machine(monkeypatch, tmp_path):
    """CPU: float32 and no loader workers; GPU: bf16-mixed and a few workers (<= 4)."""
    from conftest import make_config

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = make_config("train", [], tmp_path, tmp_path)
    assert cfg.trainer.precision == "32-true" and cfg.data.num_workers == 0
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    for cores, workers in ((2, 1), (16, 4), (64, 4)):
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        cfg = make_config("train", [], tmp_path, tmp_path)
        assert cfg.trainer.precision == "bf16-mixed" and cfg.data.num_workers == workers
