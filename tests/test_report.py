"""The comparison report of a sweep: table numbers equal their runs, paper order, the Hydra hook.

Unit tests build a sweep folder of hand-made metrics.json files; one integration test runs a
real two-model multirun of train.py on the tiny synthetic world; the compose tests check that
the experiment presets sweep what they say.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

from newsrec.report import ORACLE, build_report, model_sort_key
from newsrec.report.__main__ import main
from newsrec.report.callback import ComparisonReport

from conftest import CONF, SMALL_NRMS

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["auc", "mrr", "ndcg@5", "ndcg@10"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run(
    folder: Path,
    model: str,
    seed: int,
    offset: float,
    oracle: bool = True,
    data: str = "synthetic_tiny",
) -> dict:
    """A metrics.json as newsrec.train writes it, with metric values set by (offset, seed)."""
    metrics = {
        "model": model,
        "inputs": ["title"],
        "seed": seed,
        "data": data,
        "params_without_embeddings": 530_208 if model == "nrms" else 1_000,
        "train_time_s": 10.0 * seed + offset,
        **{f"test/{m}": 0.3 + offset + 0.01 * seed * (k + 1) for k, m in enumerate(METRICS)},
    }
    if oracle:
        metrics.update({f"test/oracle_{m}": 0.8 - 0.1 * k for k, m in enumerate(METRICS)})
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return metrics


@pytest.fixture
def sweep(tmp_path) -> tuple[Path, list[dict]]:
    """Two models x three seeds, job folders as Hydra names them; NRMS is the better one."""
    runs = []
    for job, (model, offset) in enumerate([("nrms", 0.2), ("gru", 0.1)] * 3):
        seed = job // 2 + 1
        runs.append(fake_run(tmp_path / f"{job}_model={model}", model, seed, offset))
    return tmp_path, runs


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_csv_rows_are_the_mean_and_sample_std_of_the_runs(sweep):
    folder, runs = sweep
    build_report(folder)
    rows = read_csv(folder / "comparison.csv")
    # gru before nrms (the NRMS paper's order), the oracle last.
    assert [r["model"] for r in rows] == ["gru", "nrms", ORACLE]
    for row in rows[:2]:
        mine = [r for r in runs if r["model"] == row["model"]]
        assert int(row["n_seeds"]) == 3 and row["seeds"] == "1 2 3"
        assert row["inputs"] == "title" and row["data"] == "synthetic_tiny"
        for m in METRICS:
            values = [r[f"test/{m}"] for r in mine]
            assert float(row[f"{m}_mean"]) == pytest.approx(statistics.fmean(values), abs=1e-12)
            assert float(row[f"{m}_std"]) == pytest.approx(statistics.stdev(values), abs=1e-12)
        assert int(row["params_without_embeddings"]) == mine[0]["params_without_embeddings"]
        expected_time = statistics.fmean(r["train_time_s"] for r in mine)
        assert float(row["train_time_s_mean"]) == pytest.approx(expected_time)
    oracle = rows[2]
    for m in METRICS:
        expected = statistics.fmean(r[f"test/oracle_{m}"] for r in runs)
        assert float(oracle[f"{m}_mean"]) == pytest.approx(expected, abs=1e-12)
    assert oracle["params_without_embeddings"] == ""


def test_markdown_bolds_the_best_model_and_puts_the_oracle_last(sweep):
    folder, runs = sweep
    text = build_report(folder).read_text()
    assert "synthetic_tiny" in text and "6 runs" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    header, _, gru, nrms, oracle = table
    assert header.split("|")[3:7] == [" AUC ", " MRR ", " nDCG@5 ", " nDCG@10 "]
    auc = statistics.fmean(r["test/auc"] for r in runs if r["model"] == "nrms")
    auc_std = statistics.stdev(r["test/auc"] for r in runs if r["model"] == "nrms")
    assert f"**{auc:.4f} ± {auc_std:.4f}**" in nrms  # the best, in bold
    assert nrms.count("**") == 2 * 4 and "**" not in gru and "**" not in oracle
    assert "530,208" in nrms and gru.startswith("| gru |")
    assert "oracle" in oracle and "bound" in oracle
    assert "ddof = 1" in text  # the footnote says which std


def test_single_seed_rows_show_the_mean_only(tmp_path):
    fake_run(tmp_path / "0", "nrms", 1, 0.2)
    fake_run(tmp_path / "1", "npa", 1, 0.1)
    text = build_report(tmp_path).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| nrms"))
    assert "±" not in row
    assert read_csv(tmp_path / "comparison.csv")[1]["auc_std"] == ""  # npa, nrms, oracle


def test_a_sweep_across_datasets_gives_one_table_with_a_section_per_dataset(tmp_path):
    """`python train.py -m data=synthetic,synthetic_ebnerd model=nrms,gru`: one comparison.md,
    each dataset's models compared among themselves, the CSV saying which data a row is on."""
    for job, (data, model) in enumerate(
        [(d, m) for d in ("synthetic", "synthetic_ebnerd") for m in ("nrms", "gru")]
    ):
        offset = 0.1 * (model == "nrms") + 0.05 * (data == "synthetic_ebnerd")
        fake_run(tmp_path / f"{job}_data={data},model={model}", model, 1, offset, data=data)
    text = build_report(tmp_path).read_text()
    assert text.count("## Data: ") == 2
    synthetic, ebnerd = text.split("## Data: synthetic_ebnerd")
    assert "## Data: synthetic " in synthetic
    assert "0.4100" in synthetic and "0.4600" in ebnerd  # each data's NRMS AUC in its section
    assert "0.4600" not in synthetic and "0.4100" not in ebnerd
    rows = read_csv(tmp_path / "comparison.csv")
    assert {(r["data"], r["model"]) for r in rows if r["model"] != ORACLE} == {
        (d, m) for d in ("synthetic", "synthetic_ebnerd") for m in ("nrms", "gru")
    }


def test_chart_is_a_png(sweep):
    folder, _ = sweep
    build_report(folder)
    data = (folder / "comparison.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert not list(folder.glob(".*.tmp"))  # temporary files renamed away


def test_models_follow_the_papers_order_then_unknown_names_alphabetically():
    names = ["zeta", "nrms_cnn", "nrms", "alpha", "nrms_no_attention", "gru", "lstur", "dkn"]
    ordered = sorted(names, key=model_sort_key)
    assert ordered == [
        "dkn", "lstur", "gru", "nrms", "nrms_no_attention", "nrms_cnn", "alpha", "zeta",
    ]  # fmt: skip


def test_no_oracle_row_without_oracle_figures(tmp_path):
    fake_run(tmp_path / "0", "nrms", 1, 0.2, oracle=False)
    build_report(tmp_path)
    assert [r["model"] for r in read_csv(tmp_path / "comparison.csv")] == ["nrms"]
    assert "bound" not in (tmp_path / "comparison.md").read_text()


def test_missing_metrics_is_a_clear_error(tmp_path):
    (tmp_path / "0_model=nrms").mkdir()
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        build_report(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        build_report(tmp_path / "absent")
    assert main([str(tmp_path)]) == 1


def test_cli_rebuilds_and_prints_the_table(sweep):
    folder, _ = sweep
    done = subprocess.run(
        [sys.executable, "-m", "newsrec.report", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| nrms | title |" in done.stdout and "| gru | title |" in done.stdout
    assert done.stdout.strip() == (folder / "comparison.md").read_text().strip()
    assert (folder / "comparison.csv").is_file() and (folder / "comparison.png").is_file()


def test_hydra_callback_writes_the_report_and_logs_failures(sweep, tmp_path_factory, caplog):
    folder, _ = sweep
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(folder)}}})
    callback = ComparisonReport()
    callback.on_multirun_start(config)
    callback.on_multirun_end(config)
    assert (folder / "comparison.md").is_file()

    empty = tmp_path_factory.mktemp("empty")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(empty)}}})
    with caplog.at_level("ERROR"):
        ComparisonReport().on_multirun_end(config)  # logs, does not raise
    assert "comparison report NOT written" in caplog.text and str(empty) in caplog.text


# ---------------------------------------------------------------------------------------------
# The config tree


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def sweep_jobs(cfg, *command_line: str) -> list[dict[str, str]]:
    """The jobs Hydra's basic sweeper makes: its `params` with the command line's on top."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    overrides = OverridesParser.create().parse_overrides([*params, *command_line])
    (batch,) = BasicSweeper.split_arguments(overrides, None)
    return [dict(o.split("=", 1) for o in job) for job in batch]


@pytest.mark.parametrize(
    ("experiment", "models"),
    [
        ("paper_table", ["dkn", "npa", "naml", "lstur", "gru", "nrms"]),
        (
            "ablation",
            ["nrms", "nrms_no_attention", "nrms_news_only", "nrms_word_only",
             "nrms_additive_only", "nrms_self_only"],
        ),
    ],
)  # fmt: skip
def test_experiments_sweep_their_models_and_three_seeds(experiment, models):
    cfg = compose_train(f"experiment={experiment}", "data=synthetic_tiny")
    assert cfg.data.source.preset == "synthetic_tiny"  # data= still applies
    assert f"multirun/{experiment}/" in str(cfg.hydra.sweep.dir)
    assert cfg.hydra.callbacks.comparison_report._target_ == "newsrec.report.ComparisonReport"
    jobs = sweep_jobs(cfg)
    assert sorted(jobs, key=lambda j: (j["model"], j["seed"])) == [
        {"model": m, "seed": s} for m in sorted(models) for s in ("1", "2", "3")
    ]
    for model in models:  # each preset composes and names itself as the report will group it
        assert compose_train(f"experiment={experiment}", f"model={model}").model.name == model
    # A sweep on the command line replaces the preset's.
    assert {j["seed"] for j in sweep_jobs(cfg, "seed=7,8")} == {"7", "8"}


def test_joblib_launcher_composes_with_the_experiments():
    for experiment in ("paper_table", "ablation"):
        cfg = compose_train(f"experiment={experiment}", "hydra/launcher=joblib")
        assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
        assert len(sweep_jobs(cfg)) == 18
    assert isinstance(instantiate(cfg.hydra.callbacks.comparison_report), ComparisonReport)


# ---------------------------------------------------------------------------------------------
# A real multirun


def small_preset(base: str, overrides: list[str]) -> str:
    """A model preset `base` made small: conf/model/<base>.yaml + `model.x.y=v` overrides."""
    tree: dict = {}
    for item in overrides:
        key, value = item.split("=", 1)
        *parents, leaf = key.removeprefix("model.").split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return yaml.safe_dump({"defaults": [base, "_self_"], **tree})


def test_multirun_of_train_py_ends_with_the_comparison_table(data_dir, tmp_path):
    # Per-model small sizes through an extra config folder (NRMS and GRU take different
    # keys, so one set of command-line overrides cannot shrink both).
    presets = tmp_path / "conf" / "model"
    presets.mkdir(parents=True)
    (presets / "small_nrms.yaml").write_text(small_preset("nrms", SMALL_NRMS))
    gru = ["model.news_encoder.word_dim=32", "model.news_encoder.dim=32"]
    (presets / "small_gru.yaml").write_text(small_preset("gru", gru))
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable, "train.py", "-m", "--config-dir", str(tmp_path / "conf"),
        "model=small_nrms,small_gru", "seed=1", "data=synthetic_tiny", "trainer=cpu",
        "trainer.max_epochs=1", "trainer.limit_train_batches=4", "callbacks=none",
        f"paths.data_dir={data_dir}", f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    runs = {}
    for path in sweep_dir.glob("*/metrics.json"):
        run = json.loads(path.read_text())
        runs[run["model"]] = run
    assert sorted(runs) == ["gru", "nrms"]
    rows = read_csv(sweep_dir / "comparison.csv")
    assert [r["model"] for r in rows] == ["gru", "nrms", ORACLE]
    for row in rows[:2]:
        run = runs[row["model"]]
        assert row["n_seeds"] == "1" and row["auc_std"] == ""
        for m in METRICS:
            assert float(row[f"{m}_mean"]) == pytest.approx(run[f"test/{m}"], abs=1e-12)
        assert int(row["params_without_embeddings"]) == run["params_without_embeddings"]
    for m in METRICS:
        assert float(rows[2][f"{m}_mean"]) == pytest.approx(runs["nrms"][f"test/oracle_{m}"])
    table = (sweep_dir / "comparison.md").read_text()
    assert f"{runs['nrms']['test/auc']:.4f}" in table and "2 runs" in table
    assert (sweep_dir / "comparison.png").read_bytes().startswith(PNG_MAGIC)
    assert "comparison report written" in done.stdout + done.stderr


def test_a_sweep_with_a_failed_run_keeps_the_table_of_the_runs_that_finished(data_dir, tmp_path):
    """The table is written as each run ends: the second run's failure (a user error, here a
    split that does not exist) leaves the first run's table, and no folder of its own."""
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable, "train.py", "-m", "data.val_split=dev,nope", "data=synthetic_tiny",
        "trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "callbacks=none", "logger=[]", *SMALL_NRMS,
        f"paths.data_dir={data_dir}", f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweep.subdir=${hydra.job.num}",  # all those overrides make too long a name
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert output.count("error: data.val_split='nope'") == 1 and "Traceback" not in output
    assert "a run of the sweep failed: data.val_split='nope'" in done.stderr  # Hydra's last word
    (first,) = [json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")]
    rows = read_csv(sweep_dir / "comparison.csv")
    assert [r["model"] for r in rows] == ["nrms", ORACLE]
    assert float(rows[0]["auc_mean"]) == pytest.approx(first["test/auc"], abs=1e-12)
    assert f"comparison table updated: {sweep_dir / 'comparison.md'}" in output
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name[0] != ".")
    assert jobs == ["0"]  # the failed run's folder is gone
