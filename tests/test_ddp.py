"""DDP on CPU (trainer=ddp_cpu: 2 processes, gloo), through train.py and eval.py as users run them.

Lightning's launcher re-runs the script for rank 1, so every run here is a real subprocess
(seconds of imports each): one 2-process training run is shared, and its checkpoint is then
evaluated with 1 and with 2 processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl

from newsrec.evaluate import evaluate

from conftest import SMALL_NRMS, make_config

pytestmark = pytest.mark.slow  # subprocesses: about 80 s on 2 busy cores

ROOT = Path(__file__).resolve().parents[1]
METRIC_KEYS = [
    f"test/{kind}{name}" for kind in ("", "oracle_") for name in ("auc", "mrr", "ndcg@5", "ndcg@10")
]


class SampleLog(pl.Callback):
    """Test-only: writes `<run dir>/samples_rank{r}.json`, the training samples this rank
    received as (global impression id, clicked news) pairs, and whether each batch's clicked
    news are those of the samples the batch sampler asked for."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        self.samples = datamodule.train_samples()  # the dataset train_dataloader() reads
        self.impression_id = np.asarray(datamodule.data.splits["train"].impression_id)
        self.requested: deque = deque()  # Lightning fetches a batch ahead of its step
        self.pairs: list[list[int]] = []
        self.consistent = True
        build = self.samples.__getitems__

        def recording(key):  # what the DataLoader asks the dataset for, batch by batch
            self.requested.append(key.indices)
            return build(key)

        self.samples.__getitems__ = recording

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        indices = self.requested.popleft()
        rows = np.arange(len(indices))
        clicked = batch["candidates"].numpy()[rows, batch["target"].numpy()]
        self.consistent &= bool((clicked == self.samples.clicked[indices]).all())
        impressions = self.impression_id[self.samples.impression[indices]]
        self.pairs += [[int(i), int(n)] for i, n in zip(impressions, clicked, strict=True)]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "pid": os.getpid(),
            "pairs": self.pairs,
            "consistent": self.consistent,
        }
        path = Path(trainer.default_root_dir) / f"samples_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(record))


def run_script(script: str, overrides: list[str], data_dir: Path, run_dir: Path) -> None:
    """`python <script> <overrides>` from the repository root, outputs in run_dir."""
    env = {
        **os.environ,
        "NEWSREC_DATA_DIR": str(data_dir),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])
        ),
    }
    command = [sys.executable, script, *overrides, f"hydra.run.dir={run_dir}"]
    # A session of its own: a hung rank is killed together with the launcher.
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{script} did not finish in 180 s:\n{output[-4000:]}")
    assert proc.returncode == 0, f"{' '.join(command)}\n{output[-4000:]}"


@pytest.fixture(scope="module")
def ddp_run(data_dir, tmp_path_factory) -> Path:
    """One epoch of 4 batches per rank on 2 CPU processes, then the test of its best checkpoint."""
    run_dir = tmp_path_factory.mktemp("ddp_train")
    overrides = [
        "trainer=ddp_cpu",
        "data=synthetic_tiny",
        *SMALL_NRMS,
        "~callbacks.progress_bar",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "data.batch_size=16",
        "+callbacks.sample_log._target_=test_ddp.SampleLog",
    ]
    run_script("train.py", overrides, data_dir, run_dir)
    return run_dir


def test_two_processes_train_on_disjoint_samples(ddp_run):
    records = [json.loads((ddp_run / f"samples_rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["world_size"]) for r in records] == [(0, 2), (1, 2)]
    assert records[0]["pid"] != records[1]["pid"]
    for record in records:
        assert record["consistent"]  # the batches carry the samples the sampler chose
        assert len(record["pairs"]) == 4 * 16
    shares = [{tuple(pair) for pair in r["pairs"]} for r in records]
    assert all(len(share) == 4 * 16 for share in shares)  # no sample twice within a rank
    assert not shares[0] & shares[1]


def test_only_rank_zero_writes_the_run_outputs(ddp_run):
    metrics = json.loads((ddp_run / "metrics.json").read_text())
    assert metrics["devices"] == 2 and metrics["epochs"] == 1
    for key in METRIC_KEYS:
        assert 0.0 <= metrics[key] <= 1.0
    assert [p.name for p in ddp_run.rglob("metrics.json*")] == ["metrics.json"]
    checkpoints = sorted(p.name for p in (ddp_run / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and "last.ckpt" in checkpoints
    assert Path(metrics["best_checkpoint"]).is_file()
    # TensorBoard event files are named events.out.tfevents.<time>.<host>.<pid>.<n>.
    rank_zero_pid = json.loads((ddp_run / "samples_rank0.json").read_text())["pid"]
    events = list((ddp_run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and {int(p.name.split(".")[-2]) for p in events} == {rank_zero_pid}
    # Rank 1 ran in the same Hydra run folder without writing a second config.
    assert (ddp_run / "train_ddp_process_1.log").is_file()
    assert sorted(p.name for p in ddp_run.glob(".*")) == [".hydra"]


def test_eval_with_one_and_two_processes_gives_the_same_metrics(ddp_run, data_dir, tmp_path):
    trained = json.loads((ddp_run / "metrics.json").read_text())
    results = {}
    for trainer in ("cpu", "ddp_cpu"):
        out = tmp_path / trainer
        ckpt = trained["best_checkpoint"]
        overrides = [f"trainer={trainer}", "data=synthetic_tiny", f"ckpt_path={ckpt}"]
        run_script("eval.py", overrides, data_dir, out)
        results[trainer] = json.loads((out / "metrics.json").read_text())
    for key in METRIC_KEYS:
        assert results["ddp_cpu"][key] == pytest.approx(results["cpu"][key], abs=1e-6), key
        assert trained[key] == pytest.approx(results["cpu"][key], abs=1e-6), key


def test_two_process_prediction_zip_scores_as_one_process(ddp_run, data_dir, tmp_path):
    """The unlabeled split: rank 0 gathers every rank's predictions into one submission."""
    checkpoint = json.loads((ddp_run / "metrics.json").read_text())["best_checkpoint"]
    overrides = ["data=synthetic_tiny", "data.test_split=test", f"ckpt_path={checkpoint}"]
    run_script("eval.py", ["trainer=ddp_cpu", *overrides], data_dir, tmp_path / "ddp")
    two = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    one = evaluate(make_config("eval", ["trainer=cpu", *overrides], data_dir, tmp_path / "one"))
    assert (tmp_path / "ddp" / "prediction.zip").is_file()
    for key in METRIC_KEYS[:4]:  # scored on the world's hidden clicks
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
