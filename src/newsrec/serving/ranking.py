"""Ranking with a trained recommender: an impression's candidates, or the whole news table.

`Ranker` is the evaluation's scorer (`newsrec.evaluation.scorer.Scorer`: the scores eval.py
computes) that can also rank the whole news table; `recommend.py` and the Python API
(`newsrec.load`) both rank through it.

pool=all ranks every news of the table for each history: user vectors [H, D] times all news
vectors [N, D]^T, a few hundred users at a time so that memory stays bounded (one [h, N]
block, `max_cells` floats), then `topk`. That needs a news vector that does not depend on the
user and a user vector that does not depend on the candidate, scored by a dot product:
NPA (personalized news attention) and DKN (candidate-aware user, MLP click predictor) are
refused with a message rather than ranked by a quadratic exact path. An exact k-NN by matrix
product over ~10^5 news takes seconds, so an ANN index (FAISS) would not earn its place here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from newsrec.data.info import SplitPaths
from newsrec.evaluation.scorer import Scorer
from newsrec.models.click_predictors import DotProduct
from newsrec.models.recommender import Recommender


class PoolError(ValueError):
    """pool=all asked of a model that cannot rank the whole news table by a matrix product."""


def news_ids(paths: SplitPaths) -> list[str]:
    """The MIND news id of every news-table row ("" for row 0, the padding news).

    Preprocessing numbers news by first appearance over train, dev, test news.tsv (blank
    lines skipped, a repeated id keeps its first row); only the id column is read here.
    """
    if paths.layout == "ebnerd":  # EB-NeRD: the article ids, in news-table order
        from newsrec.data.ebnerd.reader import read_articles

        return ["", *map(str, read_articles(paths.articles).ids.tolist())]
    rows: dict[str, None] = {}
    for folder in (paths.train, paths.dev, paths.test):
        if folder is None:
            continue
        with open(Path(folder) / "news.tsv", encoding="utf-8") as lines:
            for line in lines:
                news_id = line.split("\t", 1)[0].strip()
                if news_id:
                    rows.setdefault(news_id, None)
    return ["", *rows]


def pool_all_problem(recommender: Recommender) -> str | None:
    """Why this model cannot rank the whole news table (pool=all), or None if it can."""
    if recommender.engine is None:
        return "with model.engine=plain it keeps no news vectors to rank by"
    if recommender.needs_user:
        return "its news vectors depend on the user (NPA's personalized attention)"
    if recommender.candidate_aware:
        return "its user vector depends on the candidate (DKN's candidate-aware attention)"
    if not isinstance(recommender.click_predictor, DotProduct):
        return (
            f"its click predictor ({type(recommender.click_predictor).__name__}) is no dot product"
        )
    return None


def top_k_candidates(
    scores: Tensor, candidates: Tensor, mask: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """The k best-scored candidates of each impression, best first -> (news rows [B, k'],
    scores [B, k']), k' = min(k, C); row -1 / score -inf where an impression has fewer.

    Padding and news missing from news.tsv (row 0, which has no id to name) are never listed.
    Ties keep the candidates' order (a stable sort), so a list is eval.py's scores' order.
    """
    usable = mask & (candidates > 0)
    masked = scores.float().masked_fill(~usable, -torch.inf)
    top, order = torch.sort(masked, dim=1, descending=True, stable=True)
    top, order = top[:, :k], order[:, :k]
    rows = candidates.gather(1, order).masked_fill(~usable.gather(1, order), -1)
    return rows, top


def top_k_lowest_row_on_ties(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """`topk` of each row of scores [h, N] -> (values, indices) [h, k], best first, equal
    scores in ascending index: defined where `topk` leaves ties to the kernel (a user
    vector of zeros, such as an untrained empty-history fallback, ties every news at 0)."""
    values, index = scores.topk(min(k + 1, scores.shape[1]), dim=1)
    # A tie straddles the cut exactly where the k-th and (k+1)-th best are equal: only those
    # rows (in practice those of an empty history) need a pass over all their scores.
    if values.shape[1] > k:
        cut = values[:, k - 1] == values[:, k]
    else:  # k covers every news: nothing is cut
        cut = torch.zeros(len(values), dtype=torch.bool, device=values.device)
    values, index = values[:, :k], index[:, :k]
    threshold = values[:, -1:]
    if cut.any():
        block, t = scores[cut], threshold[cut]
        above, equal = block > t, block == t
        need = k - above.sum(1, keepdim=True)
        take = above | (equal & (equal.cumsum(1) <= need))
        index[cut] = take.nonzero()[:, 1].view(-1, k)
    index = index.sort(dim=1).values
    values, order = scores.gather(1, index).sort(dim=1, descending=True, stable=True)
    return values, index.gather(1, order)


class Ranker(Scorer):
    """The scorer of a recommender in eval mode over its news table, that also ranks the whole
    table (pool=all). `rows` restricts the news vectors to the rows a split reads, as
    evaluation does (the same chunks, hence the same floats as eval.py); pool=all needs them
    all (rows=None)."""

    def __init__(
        self, recommender: Recommender, table: dict[str, Tensor], rows: Tensor | None = None
    ) -> None:
        super().__init__(recommender.eval(), table, rows)

    @torch.no_grad()
    def top_k_all(
        self, batch: dict[str, Tensor], k: int, max_cells: int = 1 << 24
    ) -> tuple[Tensor, Tensor]:
        """The k best news of the whole table for each impression of a batch -> (rows [B, k],
        scores [B, k]), best first; -1 / -inf where fewer than k news are left.

        The padding news and the news already in the impression's history are never listed.
        """
        problem = pool_all_problem(self.recommender)
        if problem is not None or self.news_vectors is None:
            raise PoolError(f"pool=all cannot rank with this model: {problem}; use pool=impression")
        news = self.news_vectors.float()  # [N, D]
        users = self.user_vectors(batch).float()  # [H, D]
        k = min(k, news.shape[0])
        step = max(1, max_cells // news.shape[0])
        rows, scores = [], []
        for start in range(0, len(users), step):
            block = users[start : start + step] @ news.T  # [h, N], the only big allocation
            block[:, 0] = -torch.inf
            block.scatter_(1, batch["history"][start : start + step], -torch.inf)  # pad -> 0
            top, index = top_k_lowest_row_on_ties(block, k)
            rows.append(index)
            scores.append(top)
        owner = batch["owner"]
        rows, scores = torch.cat(rows)[owner], torch.cat(scores)[owner]
        return rows.masked_fill(scores == -torch.inf, -1), scores
