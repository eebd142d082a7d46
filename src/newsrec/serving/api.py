"""Recommendations from Python, by MIND ids: `newsrec.load(checkpoint, news=...)`.

    import newsrec
    rec = newsrec.load("outputs/train/.../checkpoints/best.ckpt", news="MINDsmall_dev/news.tsv")
    rec.recommend(history=["N1", "N7"], candidates=["N3", "N9", "N12"], k=2)
    # -> [("N9", 3.1), ("N3", 1.7)], best first
    rec.recommend(history=["N1", "N7"], k=10)  # the whole news table (not NPA / DKN)
    rec.recommend_batch([["N1"], ["N7", "N8"]], [["N3", "N9"], ["N3", "N12"]], k=1)

The checkpoint carries the model and its vocabularies (words, categories, entities, users);
the news come from the news.tsv files passed as `news` (their text is tokenised with the
checkpoint's vocabulary, as preprocessing does), or from a data config (`data="mind_small"`:
every news of its splits, as eval.py sees them). Scores are eval.py's for the same history
and candidates.

Defined behaviour where input is imperfect, following how preprocessing treats the same
cases in MIND files:
- a history news id not in the news table is dropped, as preprocessing drops history news
  missing from news.tsv; `unknown(ids)` lists such ids;
- an empty history (or one of unknown ids only) is the model's empty-history user: the
  learned fallback vector every model has for users without clicks (`Recommender.
  empty_history`), so candidates are ranked by what such users clicked in training;
- a candidate id not in the news table is scored as the empty news, as eval.py scores a
  candidate missing from news.tsv, and listed under the id it was given;
- a user id (`user=`) not among the checkpoint's training users is the unseen user (row 0),
  as in evaluation; only models with user embeddings (NPA, LSTUR) read it.
Ties keep the candidates' order. Scores are finite: no input gives NaN.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig

from newsrec.checkpoints import load_module
from newsrec.data.info import news_table_tensors
from newsrec.data.news_table import build_news_table
from newsrec.data.preprocess import PreprocessConfig, Vocabulary
from newsrec.evaluation.rerank import build_reranker, context_of
from newsrec.models.module import NewsRecModule
from newsrec.serving.lists import default_cache_dir, list_metrics
from newsrec.serving.ranking import Ranker
from newsrec.serving.reranked import rank_batch

log = logging.getLogger(__name__)


def _table_from_news_files(
    files: Sequence[str | Path], checkpoint_extra: dict
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The news table of news.tsv files, tokenised with the checkpoint's vocabulary."""
    from newsrec.data.mind import read_news

    news = {}
    for i, path in enumerate(files):
        if not Path(path).is_file():
            raise FileNotFoundError(f"news={path}: no such news.tsv")
        news["train" if i == 0 else f"file{i}"] = read_news(path)
    saved = checkpoint_extra.get("preprocess", {})
    fields = ("title_len", "abstract_len", "history_len")
    config = PreprocessConfig(**{k: saved[k] for k in fields if k in saved})
    ids, table, _, _ = build_news_table(news, config, Vocabulary(**checkpoint_extra["vocab"]))
    return news_table_tensors(table), ["", *ids]


def _table_from_data(
    checkpoint: Path, data: str | DictConfig, data_dir: str | Path | None
) -> tuple[dict[str, torch.Tensor], list[str], tuple[list[Path], Path]]:
    """The news table of a data config, preprocessed with the checkpoint's vocabulary, and
    (its news.tsv files, its cache folder)."""
    from newsrec.build import checkpoint_datamodule
    from newsrec.evaluation.radio_callback import news_files
    from newsrec.serving.ranking import news_ids

    if isinstance(data, str):
        from newsrec.config import compose_for_checkpoint

        data = compose_for_checkpoint(checkpoint, data, data_dir)
    datamodule = checkpoint_datamodule(data, checkpoint)
    datamodule.prepare_data()
    datamodule.setup("test")
    sources = (news_files(datamodule.paths), datamodule.cache_dir)
    return datamodule.news_table(), news_ids(datamodule.paths), sources


def load(
    checkpoint: str | Path,
    news: str | Path | Sequence[str | Path] | None = None,
    data: str | DictConfig | None = None,
    data_dir: str | Path | None = None,
    device: str = "cpu",
) -> NewsRecommender:
    """A trained model ready to recommend by MIND ids (see the module doc).

    Args:
        checkpoint: a checkpoint written by train.py.
        news: one or more news.tsv files (MIND format): the news that can be named.
        data: instead of `news`, a data config name (as `data=` on the command line) or a
            composed eval/recommend config; its news table is used.
        data_dir: where `data` lives (default: NEWSREC_DATA_DIR or data/).
        device: "cpu", "cuda", ... or "auto".
    """
    checkpoint = Path(checkpoint)
    if (news is None) == (data is None):
        raise ValueError(
            "newsrec.load needs the news to recommend from: pass news='path/news.tsv' (or a "
            "list of them) or data='<data config>', one of the two"
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    # Checked as eval.py checks it: a bad file raises CheckpointError naming it.
    module = load_module(checkpoint, device, key="checkpoint").eval()
    if news is not None:
        files = [news] if isinstance(news, (str, Path)) else list(news)
        table, ids = _table_from_news_files(files, module.extra)
        sources = ([Path(f) for f in files], default_cache_dir(data_dir))
    else:
        table, ids, sources = _table_from_data(checkpoint, data, data_dir)
    history_len = int(module.extra.get("preprocess", {}).get("history_len", 50))
    users = module.extra.get("vocab", {}).get("users", [])
    return NewsRecommender(module, table, ids, users, history_len, sources)


class NewsRecommender:
    """A trained recommender and a news table, queried by MIND ids (`newsrec.load`)."""

    def __init__(
        self,
        module: NewsRecModule,
        table: dict[str, torch.Tensor],
        ids: list[str],
        users: list[str],
        history_len: int = 50,
        sources: tuple[list[Path], Path] | None = None,
    ) -> None:
        self.device = module.device
        self.table = {name: t.to(self.device) for name, t in table.items()}
        self.news_ids = ids  # row -> MIND id; row 0 is the padding news ("")
        self.row = {news_id: row for row, news_id in enumerate(ids) if row}
        self.user_row = {user: row for row, user in enumerate(users) if row}
        self.history_len = history_len
        self.ranker = Ranker(module.recommender, self.table)
        self.sources = sources  # (news.tsv files, cache folder): RADio's per-news features

    def unknown(self, ids: Sequence[str]) -> list[str]:
        """The ids among `ids` that are not in the news table."""
        return [i for i in ids if i not in self.row]

    def recommend(
        self,
        history: Sequence[str],
        candidates: Sequence[str] | None = None,
        k: int = 10,
        user: str | None = None,
        rerank=None,
    ) -> list[tuple[str, float]]:
        """The k best of `candidates` (default: the whole news table minus the history) for a
        user who clicked `history` (oldest first) -> [(news id, score)], best first.

        `rerank`: a re-ranker (conf/rerank) as a name, {"name": "mmr", "weight": 0.3} or a
        `newsrec.evaluation.rerank.Reranker`; the scores listed stay the model's."""
        many = None if candidates is None else [candidates]
        users = None if user is None else [user]
        return self.recommend_batch([history], many, k, users, rerank=rerank)[0]

    @torch.no_grad()
    def recommend_batch(
        self,
        histories: Sequence[Sequence[str]],
        candidates: Sequence[Sequence[str]] | None = None,
        k: int = 10,
        users: Sequence[str | None] | None = None,
        batch_size: int = 256,
        rerank=None,
    ) -> list[list[tuple[str, float]]]:
        """`recommend` for many users at once: one list per history."""
        reranker = build_reranker(rerank)
        if candidates is not None and len(candidates) != len(histories):
            raise ValueError(f"{len(histories)} histories but {len(candidates)} candidate lists")
        if users is not None and len(users) != len(histories):
            raise ValueError(f"{len(histories)} histories but {len(users)} users")
        unknown = sum(len(self.unknown(h)) for h in histories)
        if unknown:
            log.info("%d history news ids are not in the news table: dropped", unknown)
        results = []
        for start in range(0, len(histories), batch_size):
            part = slice(start, start + batch_size)
            batch = self._batch(histories[part], users[part] if users is not None else None)
            if candidates is None:
                rows, scores, _ = rank_batch(self.ranker, reranker, batch, "all", k)
                results += [
                    [(self.news_ids[r], float(s)) for r, s in zip(row, score, strict=True) if r > 0]
                    for row, score in zip(rows.tolist(), scores.tolist(), strict=True)
                ]
            else:
                results += self._rank_candidates(batch, candidates[part], k, reranker)
        return results

    def _batch(
        self, histories: Sequence[Sequence[str]], users: Sequence[str | None] | None
    ) -> dict[str, torch.Tensor]:
        """An evaluation batch (see newsrec.data.info) of one history per row, left-padded,
        the most recent `history_len` known news kept, as preprocessing keeps them."""
        rows = [[self.row[n] for n in h if n in self.row][-self.history_len :] for h in histories]
        width = max(1, *(len(r) for r in rows))
        history = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                history[i, width - len(r) :] = torch.tensor(r)
        user = [self.user_row.get(u, 0) for u in users] if users is not None else [0] * len(rows)
        batch = {
            "history": history,
            "history_mask": history != 0,
            "user": torch.tensor(user, dtype=torch.long),
            "owner": torch.arange(len(rows)),
        }
        return {name: t.to(self.device) for name, t in batch.items()}

    def _rank_candidates(
        self,
        batch: dict[str, torch.Tensor],
        candidates: Sequence[Sequence[str]],
        k: int,
        reranker=None,
    ) -> list[list[tuple[str, float]]]:
        width = max(1, *(len(c) for c in candidates))
        rows = torch.zeros(len(candidates), width, dtype=torch.long)
        mask = torch.zeros(len(candidates), width, dtype=torch.bool)
        for i, names in enumerate(candidates):
            rows[i, : len(names)] = torch.tensor(
                [self.row.get(n, 0) for n in names], dtype=torch.long
            )
            mask[i, : len(names)] = True
        batch = {
            **batch,
            "candidates": rows.to(self.device),
            "candidate_mask": mask.to(self.device),
        }
        scores = self.ranker.scores(batch).masked_fill(~batch["candidate_mask"], -torch.inf)
        ranked = scores  # through the re-ranker, if any; the model's scores are listed
        if reranker is not None:
            context = context_of(self.ranker.recommender, self.table, self.ranker.news_vectors)
            ranked = reranker(scores, batch, context)
        order = torch.sort(ranked, dim=1, descending=True, stable=True)[1]
        top = scores.gather(1, order)
        ranked = []
        for i, names in enumerate(candidates):
            n = min(k, len(names))
            ranked.append(
                [
                    (names[j], float(s))
                    for j, s in zip(order[i, :n].tolist(), top[i, :n].tolist(), strict=True)
                ]
            )
        return ranked

    def list_metrics(
        self,
        histories: Sequence[Sequence[str]],
        lists: Sequence[Sequence[str]],
        pools: Sequence[Sequence[str]] | None = None,
        k: int | None = None,
        **options,
    ) -> dict[str, float]:
        """RADio's metrics (`newsrec.evaluation.radio`) of `lists` of news ids, best first,
        shown to users who clicked `histories`; `pools` are the candidates each list was
        chosen from (default: the whole news table). `options`: RadioMetric's (divergence,
        discount, fragmentation_by, pairs, seed, ...). Unknown ids are left out."""
        return list_metrics(self, histories, lists, pools, k, options)
