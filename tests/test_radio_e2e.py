"""RADio, re-rankers and slices through eval.py and recommend.py as users run them: MMR at
weight 0 reproduces the un-re-ranked metrics and lists exactly, and 2 DDP processes report
the RADio and slice values of 1."""

from __future__ import annotations

import json
import math

import pytest
from test_ddp import run_script

from newsrec.evaluate import evaluate
from newsrec.serving.recommend import recommend
from newsrec.train import train

from conftest import SMALL_NRMS, make_config

pytestmark = pytest.mark.slow

RADIO = [
    f"test/{n}@10"
    for n in (
        "calibration_category",
        "calibration_subcategory",
        "calibration_complexity",
        "fragmentation",
        "activation",
        "representation",
        "alternative_voices",
    )
]


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory) -> str:
    overrides = ["data=synthetic_tiny", "trainer=cpu", "trainer.max_epochs=1", *SMALL_NRMS]
    run = tmp_path_factory.mktemp("train")
    config = make_config(
        "train", [*overrides, "+trainer.limit_train_batches=4", "~logger"], data_dir, run
    )
    config.test = False
    return train(config)["best_checkpoint"]


def _eval(checkpoint, data_dir, out, *overrides) -> dict:
    base = ["data=synthetic_tiny", "data.test_split=dev", "trainer=cpu", f"ckpt_path={checkpoint}"]
    return evaluate(make_config("eval", [*base, *overrides], data_dir, out))


def test_mmr_at_weight_zero_reproduces_the_metrics_and_lists(checkpoint, data_dir, tmp_path):
    pytest.importorskip("textstat")
    pytest.importorskip("vaderSentiment")
    plain = _eval(checkpoint, data_dir, tmp_path / "none")
    zero = _eval(checkpoint, data_dir, tmp_path / "zero", "rerank=mmr", "rerank.weight=0")
    diverse = _eval(checkpoint, data_dir, tmp_path / "mmr", "rerank=mmr", "rerank.weight=0.9")
    keys = [k for k in plain if k.startswith("test/")]
    assert set(RADIO) <= set(keys) and "test/slice/history_1-4/auc" in keys
    for key in keys:
        assert zero[key] == plain[key] or (math.isnan(zero[key]) and math.isnan(plain[key])), key
    assert zero["rerank"] == "mmr" and zero["rerank_weight"] == 0.0
    for key in RADIO:  # JS divergences: in [0, 1]
        assert 0.0 <= plain[key] <= 1.0, key
    assert diverse["test/diversity_vector@10"] > plain["test/diversity_vector@10"]
    assert diverse["test/auc"] != plain["test/auc"]  # accuracy is computed on re-ranked lists
    lists = {}
    for name, extra in (("none", []), ("zero", ["rerank=mmr", "rerank.weight=0"])):
        out = tmp_path / f"recommend_{name}"
        cfg = make_config(
            "recommend", ["data=synthetic_tiny", f"ckpt_path={checkpoint}", *extra], data_dir, out
        )
        summary = recommend(cfg)
        lists[name] = (out / "recommendations.jsonl").read_text()
        assert summary["calibration_category@10"] is not None
    assert lists["zero"] == lists["none"]


def test_two_processes_report_the_radio_and_slice_values_of_one(checkpoint, data_dir, tmp_path):
    # The labeled split: RadioMetric and SliceMetric gather their states across processes
    # (the predicted split's RADio goes through the same compute; its slices are rank 0's).
    for split in ("dev",):
        overrides = ["data=synthetic_tiny", f"data.test_split={split}", f"ckpt_path={checkpoint}"]
        one = evaluate(
            make_config("eval", ["trainer=cpu", *overrides], data_dir, tmp_path / f"one_{split}")
        )
        run_script("eval.py", ["trainer=ddp_cpu", *overrides], data_dir, tmp_path / f"two_{split}")
        two = json.loads((tmp_path / f"two_{split}" / "metrics.json").read_text())
        keys = [k for k in one if k in RADIO or k.startswith("test/slice/")]
        assert len(keys) >= len(RADIO) - 2 + 30  # without textstat / VADER two are skipped
        for key in keys:
            assert two[key] == pytest.approx(one[key], abs=1e-6, nan_ok=True), (split, key)
