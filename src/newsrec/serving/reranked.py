"""Top-k lists through a re-ranker, for recommend.py and the Python API.

pool=impression re-ranks each impression's candidates, as eval.py does. pool=all first takes
the model's best `pool_depth(k)` news of the whole table (5 k, at least 50) and re-ranks those:
a re-ranker needs a pool to choose from, and a greedy pass over the whole table per user
would cost a table-sized step per position. Listed scores are the model's own scores of the
listed news (a re-ranked list is not in their order).
"""

from __future__ import annotations

import torch
from torch import Tensor

from newsrec.evaluation.rerank import Reranker, context_of
from newsrec.serving.ranking import Ranker, top_k_candidates


def pool_depth(k: int) -> int:
    """How many of the table's best news pool=all re-ranks for a top-k list."""
    return max(5 * k, 50)


def top_k_reranked(
    ranked: Tensor, scores: Tensor, candidates: Tensor, mask: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """The k best candidates by `ranked` (ties as `top_k_candidates`) -> (news rows [B, k'],
    their model `scores` [B, k']), -1 / -inf where an impression has fewer."""
    positions = torch.arange(1, candidates.shape[1] + 1, device=candidates.device)
    usable = mask & (candidates > 0)  # row 0 (news missing from news.tsv) is never listed
    top, _ = top_k_candidates(ranked, positions.expand_as(candidates), usable, k)
    index = (top - 1).clamp(min=0)
    rows = candidates.gather(1, index).masked_fill(top < 0, -1)
    return rows, scores.gather(1, index).float().masked_fill(top < 0, -torch.inf)


@torch.no_grad()
def rank_batch(
    ranker: Ranker, reranker: Reranker | None, batch: dict[str, Tensor], pool: str, k: int
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """(news rows [B, k'], model scores [B, k'], the batch whose candidates were ranked) of
    an evaluation batch, pool "impression" or "all"."""
    if pool == "all":
        if reranker is None:
            rows, scores = ranker.top_k_all(batch, k)
            return rows, scores, batch
        rows, scores = ranker.top_k_all(batch, pool_depth(k))
        batch = {**batch, "candidates": rows.clamp(min=0), "candidate_mask": rows >= 0}
    else:
        scores = ranker.scores(batch)
    ranked = scores
    if reranker is not None:
        context = context_of(ranker.recommender, ranker.table, ranker.news_vectors)
        ranked = reranker(scores, batch, context)
    rows, model = top_k_reranked(ranked, scores, batch["candidates"], batch["candidate_mask"], k)
    return rows, model, batch
