"""Evaluate a checkpoint: `python eval.py ckpt_path=PATH [data=...] [data.test_split=test]`.

On a labeled split it prints the metrics and writes metrics.json; on a split without labels
(MIND-large test) it writes the leaderboard's prediction.zip.
"""

import hydra
from omegaconf import DictConfig

from newsrec.cli import run_cli
from newsrec.console.hints import suggest_on_bad_override
from newsrec.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_cli(evaluate, cfg)


if __name__ == "__main__":
    with suggest_on_bad_override("eval"):
        main()
