"""The engine: the models' computations done faster, beside the plain ones in models/.

The models (layers.py, news_encoders.py, user_encoders.py) are written as the papers'
padded computations. The engine computes the same functions with less work, and each of
its paths is tested equal to the plain one:
- kernels.py: cheaper dropout masks and a keys-first attention layout on the CPU, the fused
  attention kernel elsewhere; chosen once when the model is built or moved;
- packing.py: sort by length, cut the padding, run per-word layers on the real words only
  (the NRMS title encoder with `pack=True`);
- evaluation.py: every news encoded once per evaluation, every distinct history once.
"""

from newsrec.models.engine.evaluation import (
    EvaluationCache,
    encode_all_news,
    encode_rows,
    news_features,
)
from newsrec.models.engine.kernels import use_fast_kernels
from newsrec.models.engine.packing import Packed, length_groups, used_columns

__all__ = [
    "EvaluationCache",
    "Packed",
    "encode_all_news",
    "encode_rows",
    "length_groups",
    "news_features",
    "use_fast_kernels",
    "used_columns",
]
