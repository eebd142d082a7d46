"""Top-k recommendations of a checkpoint: `python recommend.py ckpt_path=PATH [data=...] [k=10]
[pool=impression|all] [split=dev] [export=true]`.

Writes recommendations.jsonl (one impression a line, best first) and
recommendations_metrics.json (beyond-accuracy metrics of the lists) to the run folder; with
export=true also the news and user vectors and a TensorBoard projector (newsrec.serving.export).
A setting that cannot work exits with status 2, a bad file with status 1, both without a
traceback.
"""

import hydra
from omegaconf import DictConfig

from newsrec.cli import run_cli
from newsrec.console.hints import suggest_on_bad_override
from newsrec.serving.recommend import recommend


@hydra.main(version_base="1.3", config_path="conf", config_name="recommend")
def main(cfg: DictConfig) -> None:
    run_cli(recommend, cfg)


if __name__ == "__main__":
    with suggest_on_bad_override("recommend"):
        main()
