"""Re-rankers: an evaluation batch's scores [B, C] -> scores whose descending order is the
re-ranked list, so metrics, top-k lists and submissions downstream work unchanged.

`rerank=none|mmr|calibration|xquad rerank.weight=W rerank.depth=D` (conf/rerank). Each fills
the first D positions of every impression's list greedily, all impressions of a batch at
once (one tensor step per position, never a loop per list), from the model's scores s
normalised to rel in [0, 1] per impression (min-max, float64) and a trade-off weight W in
[0, 1]; the positions after D keep the model's order. W = 0 is the model's own ranking.

- `mmr`, maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998) over the model's own
  news vectors: argmax_i (1 - W) rel(i) - W max_{j in S} cos(v_i, v_j).
- `calibration`, calibrated recommendations (Steck, RecSys 2018), greedy over categories:
  argmax_i (1 - W) rel(i) - W KL(p || q~(S + i)), p the user's history category distribution,
  q(S) that of the chosen news, q~ = (1 - a) q + a p with a = 0.01 (Steck's); a user without
  history keeps the model's order.
- `xquad` (Santos, Macdonald & Ounis, WWW 2010) with categories as aspects and binary
  P(i | c): argmax_i (1 - W) rel(i) + W P(c_i | u) [no chosen news of category c_i yet],
  P(c | u) the history's category distribution (the pool's without a history).

Output: a row whose greedy choice is the model's own order (W = 0 always) keeps its scores
bit for bit, so `rerank=mmr rerank.weight=0` reproduces un-re-ranked lists and metrics
exactly (tested); any other row gets -position in the re-ranked list (0, -1, -2, ...), so
equal scores never reorder it downstream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

RERANKERS = ("none", "mmr", "calibration", "xquad")
STECK_ALPHA = 0.01


class RerankError(ValueError):
    """A re-ranker setting that cannot work; the message says which and what to do."""


@dataclass
class RerankContext:
    """What re-rankers read besides a batch: each news row's category [N], the model's news
    vectors [N, D] when it has them, else `encode(rows, batch)` -> vectors [..., D]."""

    category: Tensor
    news_vectors: Tensor | None = None
    encode: Callable[[Tensor, dict], Tensor] | None = None

    def vectors(self, rows: Tensor, batch: dict[str, Tensor]) -> Tensor:
        if self.news_vectors is not None:
            return self.news_vectors[rows]
        if self.encode is None:
            raise RerankError("rerank=mmr needs the model's news vectors; this model has none")
        return self.encode(rows, batch)


def context_of(recommender, table: dict[str, Tensor], news_vectors: Tensor | None):
    """The `RerankContext` of a recommender and its news table (NPA: vectors per user)."""

    def encode(rows: Tensor, batch: dict[str, Tensor]) -> Tensor:
        user = batch["user"][batch["owner"]][:, None].expand_as(rows)
        return recommender.encode_news(table, rows, user if recommender.needs_user else None)

    return RerankContext(table["category"], news_vectors, encode)


@dataclass(frozen=True)
class Reranker:
    """A re-ranker of conf/rerank: its `name`, trade-off `weight` and greedy `depth`."""

    name: str = "none"
    weight: float = 0.0
    depth: int = 10

    def __post_init__(self) -> None:
        if self.name not in RERANKERS:
            raise RerankError(f"rerank={self.name}: choose one of {', '.join(RERANKERS)}")
        if not 0.0 <= float(self.weight) <= 1.0:
            raise RerankError(
                f"rerank.weight={self.weight}: the trade-off weight must be in [0, 1] "
                "(0: the model's order, 1: diversity alone)"
            )
        if int(self.depth) < 1:
            raise RerankError(f"rerank.depth={self.depth}: re-rank at least one position")

    @torch.no_grad()
    def __call__(self, scores: Tensor, batch: dict[str, Tensor], context: RerankContext) -> Tensor:
        """Re-ranked scores [B, C] of an evaluation batch's scores [B, C]."""
        if self.name == "none":
            return scores
        valid = batch["candidate_mask"]
        rel = _relevance(scores, valid)
        depth = min(int(self.depth), scores.shape[1])
        greedy = {"mmr": _mmr, "calibration": _calibration, "xquad": _xquad}[self.name]
        chosen, ok = greedy(rel, valid, batch, context, float(self.weight), depth)
        return _scores_of_order(scores, valid, chosen, ok)


def build_reranker(config) -> Reranker | None:
    """The Reranker of a `rerank` config node (or dict, or name), None for rerank=none."""
    if config is None:
        return None
    if isinstance(config, Reranker):
        return None if config.name == "none" else config
    if isinstance(config, str):
        config = {"name": config}
    reranker = Reranker(**{k: v for k, v in dict(config).items() if not k.startswith("_")})
    return None if reranker.name == "none" else reranker


def _relevance(scores: Tensor, valid: Tensor) -> Tensor:
    """Min-max normalised scores in [0, 1] per row (float64 keeps distinct float32 scores
    distinct, so the order and its ties are the model's); 0 where a row is constant."""
    s = scores.double()
    low = torch.where(valid, s, torch.inf).amin(1, keepdim=True)
    high = torch.where(valid, s, -torch.inf).amax(1, keepdim=True)
    span = high - low
    rel = torch.where(span > 0, (s - low) / span.clamp(min=1e-300), 0.0)
    return torch.where(valid, rel, 0.0)


def _pick(objective: Tensor, valid: Tensor, taken: Tensor) -> tuple[Tensor, Tensor]:
    """argmax of each row among valid news not yet taken (the first on ties), and whether
    the row had one left."""
    objective = objective.masked_fill(~valid | taken, -torch.inf)
    best, pick = objective.max(1)
    return pick, best > -torch.inf


def _greedy(rel, valid, depth, penalty, update) -> tuple[Tensor, Tensor]:
    """Fill `depth` positions: at each, argmax of penalty(step) (rel minus what the chosen
    news cost); update(step, pick, ok) learns the choice. -> (picks [B, d], ok [B, d])."""
    taken = torch.zeros_like(valid)
    rows = torch.arange(len(valid), device=valid.device)
    picks, oks = [], []
    for step in range(depth):
        pick, ok = _pick(penalty(step), valid, taken)
        taken[rows, pick] |= ok
        update(step, pick, ok)
        picks.append(pick)
        oks.append(ok)
    return torch.stack(picks, 1), torch.stack(oks, 1)


def _row_groups(sizes: Tensor, slack: float = 1.25) -> list[Tensor]:
    """Rows in groups of similar length, sorted: a group's longest is at most `slack` times
    its shortest (plus 4), so padding each group to its longest wastes little."""
    order = sizes.argsort()
    ordered = sizes[order].tolist()
    groups, start = [], 0
    for i, size in enumerate(ordered):
        if size > slack * ordered[start] + 4:
            groups.append(order[start:i])
            start = i
    groups.append(order[start:])
    return groups


def _unit_blocks(valid, batch, context):
    """The valid candidates' unit vectors in blocks of rows of similar length
    [(rows [n], columns [n, w], vectors [n, w, D])]: a batch is padded to its longest
    impression (up to 300 candidates where MIND averages 37), and padding would cost most."""
    candidates = batch["candidates"]
    full = None
    if context.news_vectors is None:  # vectors per (user, news): NPA
        full = F.normalize(context.vectors(candidates, batch).float(), dim=-1)
    sizes = valid.sum(1)
    left = torch.sort((~valid).to(torch.uint8), dim=1, stable=True).indices  # valid first
    blocks = []
    for rows in _row_groups(sizes):
        columns = left[rows, : max(1, int(sizes[rows].max()))]
        if full is None:
            news = candidates[rows[:, None], columns]
            vectors = F.normalize(context.news_vectors[news].float(), dim=-1)
        else:
            vectors = full[rows[:, None], columns]
        blocks.append((rows, columns, vectors))
    return blocks


def _mmr(rel, valid, batch, context, weight, depth):
    """MMR block by block: each block's greedy runs on its own dense [n, w] arrays, so a
    step is one batched matrix-vector product and no scatter into the padded batch."""
    chosen = torch.zeros(len(rel), depth, dtype=torch.long, device=rel.device)
    ok = torch.zeros(len(rel), depth, dtype=torch.bool, device=rel.device)
    for rows, columns, vectors in _unit_blocks(valid, batch, context):
        inside = valid[rows[:, None], columns]  # [n, w]; False on a block's padding
        closest = torch.zeros(inside.shape, dtype=torch.float64, device=rel.device)
        index = torch.arange(len(rows), device=rel.device)
        block_rel = rel[rows[:, None], columns]

        def objective(step: int, block_rel=block_rel, closest=closest) -> Tensor:
            return (1 - weight) * block_rel - (weight * closest if step else 0.0)

        def update(step: int, pick: Tensor, _, vectors=vectors, closest=closest, index=index):
            cosine = torch.bmm(vectors, vectors[index, pick].unsqueeze(-1)).squeeze(-1)
            closest.copy_(cosine if step == 0 else torch.maximum(closest, cosine.double()))

        picks, oks = _greedy(block_rel, inside, min(depth, inside.shape[1]), objective, update)
        chosen[rows, : picks.shape[1]] = columns.gather(1, picks)
        ok[rows, : oks.shape[1]] = oks
    return chosen, ok


def _category_target(batch, context, pool_fallback: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(candidate categories [B, C], target distribution p [B, G], has target [B]): the
    history's categories (uniform weights), or the valid candidates' with `pool_fallback`."""
    size = int(context.category.max()) + 1
    history = batch["history"][batch["owner"]]
    seen = batch["history_mask"][batch["owner"]] & (history > 0)
    p = torch.zeros(len(history), size, dtype=torch.float64, device=history.device)
    p.scatter_add_(1, context.category[history], seen.double())
    category = context.category[batch["candidates"]]
    has = p.sum(1) > 0
    if pool_fallback:
        pool = torch.zeros_like(p).scatter_add_(1, category, batch["candidate_mask"].double())
        p = torch.where(has[:, None], p, pool)
    p = p / p.sum(1, keepdim=True).clamp(min=1e-300)
    return category, p, p.sum(1) > 0


def _calibration(rel, valid, batch, context, weight, depth):
    category, p, has = _category_target(batch, context, pool_fallback=False)
    count = torch.zeros_like(p)  # categories of the chosen news
    entropy_term = torch.where(p > 0, p * torch.log(p.clamp(min=1e-300)), 0.0).sum(1, True)
    a, index = STECK_ALPHA, torch.arange(len(rel), device=rel.device)

    def objective(step: int) -> Tensor:
        base = (1 - a) * count / (step + 1) + a * p  # q~ of S + i without i's own share
        cross = torch.where(p > 0, p * torch.log(base.clamp(min=1e-300)), 0.0)
        p_i, base_i = p.gather(1, category), base.gather(1, category)
        with_i = torch.where(p_i > 0, p_i * torch.log(base_i + (1 - a) / (step + 1)), 0.0)
        kl = entropy_term - (cross.sum(1, True) - cross.gather(1, category) + with_i)
        return (1 - weight) * rel - torch.where(has[:, None], weight * kl, 0.0)

    def update(step: int, pick: Tensor, ok: Tensor) -> None:
        count[index, category[index, pick]] += ok.double()

    return _greedy(rel, valid, depth, objective, update)


def _xquad(rel, valid, batch, context, weight, depth):
    category, p, _ = _category_target(batch, context, pool_fallback=True)
    covered = torch.zeros_like(p, dtype=torch.bool)
    index = torch.arange(len(rel), device=rel.device)

    def objective(step: int) -> Tensor:
        novel = p.gather(1, category) * ~covered.gather(1, category)
        return (1 - weight) * rel + weight * novel

    def update(step: int, pick: Tensor, ok: Tensor) -> None:
        covered[index, category[index, pick]] |= ok

    return _greedy(rel, valid, depth, objective, update)


def _scores_of_order(scores: Tensor, valid: Tensor, chosen: Tensor, ok: Tensor) -> Tensor:
    """Scores [B, C] whose descending order is: the chosen news in their order, then the
    others in the model's order (see the module doc); rows chosen in the model's own order
    keep their scores."""
    masked = scores.masked_fill(~valid, -torch.inf)
    order = torch.sort(masked, dim=1, descending=True, stable=True)[1]
    d = chosen.shape[1]
    same = ((chosen == order[:, :d]) | ~ok).all(1)
    if bool(same.all()):
        return scores
    b, c = scores.shape
    index = torch.arange(b, device=scores.device)[:, None].expand_as(chosen)
    taken = torch.zeros_like(valid)
    taken[index[ok], chosen[ok]] = True
    position = torch.zeros(b, c, dtype=torch.long, device=scores.device)
    position[index[ok], chosen[ok]] = torch.arange(d, device=scores.device).expand_as(chosen)[ok]
    rest = (~taken.gather(1, order)).long().cumsum(1) - 1  # place among the others, model order
    others = torch.zeros_like(position).scatter_(1, order, rest) + ok.sum(1, keepdim=True)
    position = torch.where(taken, position, others)
    reranked = torch.where(valid, -position.to(scores.dtype), scores)
    return torch.where(same[:, None], scores, reranked)


def rerank_scores(module, batch: dict[str, Tensor], scores: Tensor) -> Tensor:
    """`scores` [B, C] of a LightningModule's evaluation batch through its `reranker` (set
    by eval.py from conf/rerank; None: unchanged)."""
    reranker = getattr(module, "reranker", None)
    if reranker is None:
        return scores
    context = context_of(module.recommender, module.table, module.scorer.news_vectors)
    return reranker(scores, batch, context)


def rerank_summary(cfg) -> dict:
    """What metrics.json records of a run's re-ranker (read by the trade-off report)."""
    config = cfg.get("rerank") if hasattr(cfg, "get") else None
    if config is None:
        return {}
    reranker = Reranker(**{k: v for k, v in dict(config).items() if not k.startswith("_")})
    return {"rerank": reranker.name, "rerank_weight": float(reranker.weight)}
