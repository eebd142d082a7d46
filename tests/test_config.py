"""The config tree as Lightning + Hydra users drive it: Trainer flags without `+`, the debug
group, Optuna's sweeper, and runs that print only what is meant for the user."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import yaml
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities.rank_zero import rank_zero_info

import newsrec.cli  # noqa: F401  (installs the warning and log filters)
from newsrec.config import optimized_value
from newsrec.train import train

from conftest import SMALL_NRMS, make_config

ROOT = Path(__file__).resolve().parents[1]
TEST_KEYS = ["test/auc", "test/mrr", "test/ndcg@5", "test/ndcg@10"]


def run_train(overrides: list[str], data_dir: Path, multirun: bool = False) -> str:
    """`python train.py [-m] <overrides>` from the repository root; its output."""
    env = {**os.environ, "NEWSREC_DATA_DIR": str(data_dir)}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "src"), str(ROOT / "tests"), env.get("PYTHONPATH")])
    )
    flags = ["-m"] if multirun else []
    command = [sys.executable, "train.py", *flags, "data=synthetic_tiny", *SMALL_NRMS, *overrides]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(command)}\n{output[-4000:]}"
    return output


def test_the_usual_trainer_flags_need_no_plus(data_dir, tmp_path):
    flags = {
        "strategy": "ddp",
        "max_steps": 7,
        "limit_train_batches": 10,
        "limit_val_batches": 0.5,
        "val_check_interval": 5,
        "accumulate_grad_batches": 2,
        "gradient_clip_val": 1.0,
    }
    overrides = ["trainer.accelerator=cpu", *(f"trainer.{k}={v}" for k, v in flags.items())]
    cfg = make_config("train", overrides, data_dir, tmp_path)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.max_steps == 7 and trainer.accumulate_grad_batches == 2
    assert trainer.limit_train_batches == 10 and trainer.limit_val_batches == 0.5
    assert trainer.val_check_interval == 5 and trainer.gradient_clip_val == 1.0
    # Left alone, each is Lightning's own default.
    default = hydra.utils.instantiate(
        make_config("train", ["trainer.accelerator=cpu"], data_dir, tmp_path).trainer,
        logger=False,
    )
    assert default.max_steps == -1 and default.accumulate_grad_batches == 1
    assert default.limit_train_batches == 1.0 and default.val_check_interval == 1.0


def test_each_training_setting_has_one_owner(tmp_path):
    """conf/optimizer/adam.yaml owns the learning rate and conf/trainer/default.yaml the
    epochs; a MIND scale's recipe (conf/recipe) and a model that needs its own rate override
    those keys; the command line wins over all of them."""

    def compose(*overrides: str):
        return make_config("train", list(overrides), tmp_path, tmp_path)

    default = compose()
    assert default.model.optimizer.lr == 1e-3 and default.trainer.max_epochs == 3
    small = compose("data=mind_small")
    assert small.model.optimizer.lr == 1e-4 and small.trainer.max_epochs == 5
    assert small.trainer.val_check_interval == 0.5
    assert compose("data=mind_large").trainer.val_check_interval == 0.25
    assert compose("model=nrms_plm").model.optimizer.lr == 1e-4
    assert compose("data=mind_small", "model.optimizer.lr=3e-4").model.optimizer.lr == 3e-4
    assert compose("data=mind_small", "trainer.max_epochs=1").trainer.max_epochs == 1
    for cfg in (default, small):
        assert not {"lr", "max_epochs", "val_check_interval"} & set(cfg.data)
        assert "lr" not in cfg.model  # no second home beside model.optimizer
    assert compose("scheduler=cosine").model.scheduler._target_.endswith("CosineAnnealingLR")


@pytest.mark.parametrize(
    "steps",
    [
        ["trainer.limit_train_batches=10", "trainer.max_steps=10"],  # the command
        ["trainer.max_steps=3"],  # stops mid-epoch, before any validation
        ["trainer.val_check_interval=4", "trainer.max_epochs=1"],  # validates every 4 batches
    ],
)
def test_runs_cut_by_steps_train_and_test(steps, train_config):
    # Early stopping checks after validation, not at the end of a training epoch that may
    # have had none ("Early stopping conditioned on metric val/auc which is not available").
    metrics = train(train_config(*SMALL_NRMS, *steps))
    for key in TEST_KEYS:
        assert 0.0 <= metrics[key] <= 1.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fdr", {"fast_dev_run": True}),
        ("overfit", {"overfit_batches": 3, "max_epochs": 20}),
        ("profiler", {"profiler": "simple", "max_epochs": 1}),
        ("limit", {"limit_train_batches": 5, "limit_val_batches": 2, "max_epochs": 2}),
    ],
)
def test_debug_configs_compose(name, expected, data_dir, tmp_path):
    cfg = make_config("train", [f"debug={name}"], data_dir, tmp_path)
    assert cfg.task_name == "debug" and cfg.logger is None
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.detect_anomaly is True
    for key, value in expected.items():
        assert cfg.trainer[key] == value, key


def test_fast_dev_run_trains_and_tests_one_batch(data_dir, tmp_path):
    cfg = make_config(
        "train", ["data=synthetic_tiny", "debug=fdr", *SMALL_NRMS], data_dir, tmp_path
    )
    metrics = train(cfg)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert all(key in metrics for key in TEST_KEYS)


def test_optimized_value_is_the_named_metric():
    metrics = {"val/auc_best": 0.61, "test/auc": 0.58, "model": "nrms"}
    assert optimized_value(metrics, "val/auc_best") == 0.61
    assert optimized_value(metrics, None) is None
    with pytest.raises(KeyError, match="val/mrr_best.*test/auc, val/auc_best"):
        optimized_value(metrics, "val/mrr_best")


def test_lightning_product_tips_are_dropped_and_other_messages_kept(caplog):
    caplog.set_level(logging.INFO)
    rank_zero_info("💡 Tip: For seamless cloud logging, try installing [litlogger](...)")
    rank_zero_info("💡 Tip: For seamless cloud uploads, try installing [litmodels](...)")
    rank_zero_info(
        "Trainer already configured with model summary callbacks: [<class 'ModelSummary'>]. "
        "Skipping setting a default `ModelSummary` callback."
    )
    rank_zero_info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


@pytest.mark.slow
def test_a_plain_run_prints_no_advertisement_or_foreign_deprecation(data_dir, tmp_path):
    output = run_train(
        ["trainer.max_epochs=1", "trainer.limit_train_batches=3", f"hydra.run.dir={tmp_path}"],
        data_dir,
    )
    assert "test metrics" in output
    for noise in ("litlogger", "litmodels", "LeafSpec", "already configured"):
        assert noise not in output, noise


@pytest.mark.slow
def test_ddp_by_strategy_flag_on_cpu(data_dir, tmp_path):
    """`python train.py trainer.strategy=ddp trainer.accelerator=cpu trainer.devices=2`."""
    run_train(
        [
            "trainer.strategy=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "~callbacks.progress_bar",
            f"hydra.run.dir={tmp_path}",
        ],
        data_dir,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["devices"] == 2
    for key in TEST_KEYS:
        assert 0.0 <= metrics[key] <= 1.0


@pytest.mark.slow
def test_optuna_sweep_reports_the_best_validation_auc_of_its_trials(data_dir, tmp_path):
    output = run_train(
        [
            "hparams_search=nrms_optuna",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.sampler.n_startup_trials=2",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "test=false",
            f"hydra.sweep.dir={tmp_path}",
        ],
        data_dir,
        multirun=True,
    )
    trials = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/metrics.json"))]
    assert len(trials) == 3
    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(max(t["val/auc_best"] for t in trials))
    assert set(result["best_params"]) == {
        "model.optimizer.lr",
        "model.news_encoder.dropout",
        "data.npratio",
        "data.batch_size",
    }
    assert not (tmp_path / "comparison.md").exists()  # trials are not seeds of one model
    # Quiet: no "[HYDRA] setup plugin alembic..." lines, no colour codes from Optuna's
    # handler; its study line once, in Hydra's format.
    assert "alembic" not in output and "\x1b[" not in output
    assert output.count("A new study created in memory with name: nrms") == 1
