"""Top-k recommendations of a checkpoint: `python recommend.py ckpt_path=PATH [data=...] [k=10]
[pool=impression|all] [split=dev] [export=true]`.

Writes recommendations.jsonl (one impression a line, best first) and
recommendations_metrics.json (beyond-accuracy metrics of the lists) to the run folder; with
export=true also the news and user vectors and a TensorBoard projector (newsrec.serving.export).
"""

import sys

import hydra
from omegaconf import DictConfig

from newsrec.serving.recommend import RecommendError, recommend


@hydra.main(version_base="1.3", config_path="conf", config_name="recommend")
def main(cfg: DictConfig) -> None:
    try:
        recommend(cfg)
    except RecommendError as err:  # a setting the user can fix: the message, no traceback
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
