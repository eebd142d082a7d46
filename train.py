"""Train a model and test its best checkpoint: `python train.py [model=nrms] [data=synthetic]`.

Sweeps: `python train.py -m model=nrms,npa,lstur seed=1,2,3` (comparison table at the end).
"""

import hydra
from omegaconf import DictConfig

from newsrec.runner import run_cli, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run_cli(train, cfg)
    return metrics.get("test/auc")  # the value Hydra sweepers optimise


if __name__ == "__main__":
    main()
