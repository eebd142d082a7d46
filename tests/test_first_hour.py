"""A new user's first hour (issue 21): the quick command, quiet logs, progress in a log file,
failed runs that leave nothing behind, mistyped overrides that get the right key suggested.

The command lines run as a user runs them: `python train.py ...` in a subprocess whose
stdout is a pipe (not a terminal, as under nohup or SLURM).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from newsrec.console.hints import nearest, overrides, suggestions

from conftest import SMALL_NRMS

ROOT = Path(__file__).resolve().parents[1]

# Lines the issue listed as noise; none may appear in a normal run.
NOISE = [
    "Restoring states from the checkpoint",
    "Loaded model weights from the checkpoint",
    "Total FLOPs",
    "log_every_n_steps",
    "val_check_interval",
    "Seed set to",
    "Test metric",  # Lightning's own table of the test metrics, beside newsrec's
    "Traceback",
]


def run(args: list[str], data_dir: Path, script: str = "train.py") -> subprocess.CompletedProcess:
    env = {**os.environ, "NEWSREC_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_quick_experiment_trains_and_tests_in_seconds(tmp_path):
    """`python train.py experiment=quick`, the README's first command, on a fresh data folder
    (the tiny world is generated too)."""
    start = time.perf_counter()
    done = run(["experiment=quick", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path / "data")
    seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"] == "synthetic_tiny" and metrics["epochs"] == 2
    assert 0.5 < metrics["test/auc"] <= metrics["test/oracle_auc"]
    # What it prints: the best checkpoint's dev metrics and the test metrics, each once,
    # beside the oracle; the quick model's parameters with and without embeddings.
    assert output.count("val metrics (best checkpoint on dev):") == 1
    assert output.count("test metrics (test):") == 1
    assert f"auc      {metrics['test/auc']:.4f}   oracle" in output
    assert f"parameters: {metrics['params']:,} (0.2 MB); " in output
    assert f"; {metrics['params_without_embeddings']:,} outside the embedding tables" in output
    for noise in NOISE:
        assert noise not in output, noise
    print(f"experiment=quick: {seconds:.1f} s wall")  # README: under 30 s on a quiet 2-core CPU


@pytest.mark.slow
def test_a_run_in_a_log_file_reports_progress_and_draws_a_loss_curve(data_dir, tmp_path):
    """stdout a pipe: progress lines instead of Rich's bar; 6 batches per epoch, fewer than
    log_every_n_steps=20, still give train/loss points and no warning."""
    done = run(
        [
            "data=synthetic_tiny",
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=6",
            "callbacks.training_log.every_s=0",  # a line after every step
            "test=false",
            f"hydra.run.dir={tmp_path}",
            *SMALL_NRMS,
        ],
        data_dir,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    line = re.compile(
        r"epoch (\d)/2  step (\d)/6  [\d,]+ samples/s  loss \d+\.\d{4}  "
        r"ETA epoch \d+:\d\d:\d\d, fit \d+:\d\d:\d\d"
    )
    steps = [(int(m[1]), int(m[2])) for m in line.finditer(output)]
    assert steps == [(e, s) for e in (1, 2) for s in range(1, 7)]
    assert len(re.findall(r"validation after epoch \d, step \d+: auc 0\.\d{4}", output)) == 2
    assert "training done: 12 steps" in output
    assert "━" not in output.split("parameters: ")[1]  # no Rich bar after the summary
    for noise in NOISE:
        assert noise not in output, noise
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [5, 11]  # the end of each 6-batch epoch
    assert len(events.Scalars("lr-Adam")) >= 2
    assert [e.value for e in events.Scalars("lr-Adam")][0] == pytest.approx(1e-3)


@pytest.mark.slow
def test_a_run_that_fails_before_training_leaves_no_run_folder(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    done = run(["data=synthetic_tiny", "data.val_split=nope", f"hydra.run.dir={run_dir}"], data_dir)
    assert done.returncode == 1
    assert "error: data.val_split='nope': this dataset has the splits" in done.stderr
    assert "Traceback" not in done.stderr
    assert not run_dir.exists()


def test_a_mistyped_override_gets_hydras_message_and_the_nearest_key(tmp_path):
    done = run(["trainer.max_epoch=1", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert done.returncode == 1
    assert "Could not override 'trainer.max_epoch'" in done.stderr  # Hydra's own message
    assert "did you mean trainer.max_epochs?" in done.stderr
    assert not (tmp_path / "run").exists()


def test_suggestions_follow_the_groups_chosen_on_the_command_line():
    lines = suggestions(
        "train",
        ["-m", "model=npa,lstur", "data.preprocess.titel_len=3", "seed=1", "traner=cpu"],
    )
    assert lines[0].startswith("did you mean data.preprocess.title_len?")
    assert lines[1].startswith("did you mean trainer?")
    assert len(lines) == 2  # seed is a key; model is a group
    # NPA's own keys are known once model=npa is composed (NRMS's encoder has no filters).
    (npa,) = suggestions("train", ["model=npa", "model.news_encoder.filter=5"])
    assert npa.startswith("did you mean model.news_encoder.filters?")
    assert nearest("qwertyuiop", {"seed", "trainer.max_epochs"}) is None
    assert overrides(["-m", "--config-dir", "x=y", "a=1", "-cn", "eval"]) == ["a=1"]


def test_on_a_terminal_the_rich_bar_stays_and_no_line_is_logged(monkeypatch):
    from newsrec.console import progress

    monkeypatch.setattr(progress, "interactive", lambda: True)
    assert progress.TrainingLog().lines is False
    monkeypatch.setattr(progress, "interactive", lambda: False)
    assert progress.TrainingLog().lines is True
    assert progress.TrainingLog(lines=False).lines is False  # forced either way


def test_the_test_metrics_print_as_named_lines_and_a_slice_table(capsys):
    """What a run prints after its test: the official metrics beside the oracle's, the
    beyond-accuracy and RADio figures each under their name, and the slices as a table in the
    order of their definition (history bins by length), each with its impression count."""
    from newsrec.cli import print_metrics

    metrics = {"test/auc": 0.61, "test/oracle_auc": 0.77, "test/ndcg@10": 0.4}
    metrics |= {"test/coverage@10": 0.9, "test/calibration_category@10": 0.36}
    metrics |= {"test/fragmentation_pairs@10": 79800.0}
    for name, count in (("history_10-19", 71.0), ("history_5-9", 156.0), ("user_new", 2.0)):
        metrics |= {f"test/slice/{name}/auc": 0.5, f"test/slice/{name}/impressions": count}
    print_metrics(metrics, "test", "test")
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        "test metrics (test):",
        "  auc      0.6100   oracle 0.7700",
        "  ndcg@10  0.4000",
    ]
    assert "  beyond accuracy: coverage@10 0.9000" in lines
    assert "  RADio: calibration_category@10 0.3600, fragmentation_pairs@10 79,800" in lines
    table = lines[lines.index(next(x for x in lines if "by slice" in x)) + 1 :]
    assert [row.split()[0] for row in table] == ["history_5-9", "history_10-19", "user_new"]
    assert table[0].split()[1:] == ["0.5000", "nan", "156"]
