"""What `python eval.py ckpt_path=...` does: a checkpoint's metrics on `cfg.data`'s test split,
or the leaderboard's prediction.zip when that split has no labels."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from newsrec import build
from newsrec.checkpoints import load_module, read_checkpoint
from newsrec.cli import print_metrics, write_metrics
from newsrec.data.features import check_model_data
from newsrec.evaluation.predict import predict_unlabeled
from newsrec.evaluation.rerank import build_reranker, rerank_summary


def evaluate(cfg: DictConfig) -> dict:
    """Evaluate `cfg.ckpt_path`; the metrics are printed and written to metrics.json."""
    path = Path(cfg.ckpt_path)
    # Checked before any data is prepared: a bad file stops the run with nothing cached.
    checkpoint = read_checkpoint(path)
    module = load_module(path, checkpoint=checkpoint)
    dm = build.checkpoint_datamodule(cfg, path, checkpoint)
    with build.preparing_data(cfg.paths.data_dir):
        dm.prepare_data()
        dm.setup("test")
    check_model_data(module.recommender.news_encoder.features, dm, module.name)
    module.use_data(build.module_data(dm, ("test",)))
    module.reranker = build_reranker(cfg.get("rerank"))  # conf/rerank: after scoring, on test
    trainer = build.trainer(cfg)
    metrics = {"checkpoint": str(path), "split": dm.test_split, **rerank_summary(cfg)}
    if dm.data.splits[dm.test_split].labeled:
        trainer.test(module, datamodule=dm, verbose=False)  # printed below, once
        metrics.update(
            {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        )
    else:
        metrics.update(predict_unlabeled(trainer, module, dm, Path(cfg.paths.output_dir)))
    print_metrics(metrics, "test")
    write_metrics(Path(cfg.paths.output_dir) / "metrics.json", metrics)
    return metrics
