"""Names and numbers shared by the data side, the models and the reports.

Kept free of imports (no torch, no numpy) so that light modules such as `newsrec.report`
can use them without pulling in the training stack.
"""

from __future__ import annotations

# MIND's folders: train and dev are labeled; test is the unlabeled leaderboard split
# (MIND-large and the synthetic world have one, MIND-small does not).
SPLITS = ("train", "dev", "test")

DAY = 86_400  # seconds; MIND's protocol holds out the last day(s) of train for validation

# The official MIND metrics, per impression then averaged (newsrec.evaluation.metrics); metrics.json
# holds them as `val/<name>`, `test/<name>` and, on a synthetic world, `test/oracle_<name>`.
METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")
