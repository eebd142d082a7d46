"""Train a model and test its best checkpoint: `python train.py [model=nrms] [data=synthetic]`.

A first result in seconds: `python train.py experiment=quick`. Sweeps: `python train.py -m
model=nrms,npa,lstur seed=1,2,3` (comparison table refreshed as each run ends);
hyperparameter search: `python train.py -m hparams_search=nrms_optuna`.
"""

import hydra
from omegaconf import DictConfig

from newsrec.cli import run_cli
from newsrec.config import optimized_value
from newsrec.console.hints import suggest_on_bad_override
from newsrec.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run_cli(train, cfg)
    # What a sweeper optimises (conf/hparams_search sets `optimized_metric`), e.g. val/auc_best.
    return optimized_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    with suggest_on_bad_override("train"):
        main()
