"""EB-NeRD's parquet files -> the same `Preprocessed` arrays as MIND (newsrec.data.arrays).

The protocol of the RecSys'24 Challenge and its toolkit (ebrec):
- the news table is articles.parquet (the bundle's, then the test set's): title, subtitle
  (as the abstract), category_str, the first subcategory id, and optionally the pre-computed
  document vector of each article; row k + 1 is the k-th distinct article id;
- an impression's candidates are `article_ids_inview` in file order, its clicks
  `article_ids_clicked` (a candidate is clicked when its id is among them, as the toolkit's
  `create_binary_labels_column`); its history is the user's row of the split's
  history.parquet (`article_id_fixed`, the 21 days before the split, oldest first), the same
  for every impression of the user in that split, cut to the last `history_len` clicks;
- what real data holds and a model can live with is counted in the data report: impressions
  without a click (kept for evaluation, where metrics skip them; no training sample),
  impressions with several clicks (one training sample per click), in-view articles missing
  from articles.parquet (scored as the empty news, row 0), history articles missing from it
  (dropped), users without a history row (empty history);
- the test set's 200,000 beyond-accuracy impressions all carry impression id 0: they get
  internal ids after the largest real one (metrics and DDP need unique ids); the submission
  writes the published ids back (newsrec.evaluation.ebnerd_submission).
The vocabularies come from the articles the training split shows or holds in histories.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from newsrec.constants import DAY
from newsrec.data.arrays import PreprocessConfig, Preprocessed, SplitArrays, Vocabulary
from newsrec.data.ebnerd.reader import (
    Articles,
    Impressions,
    iter_document_vectors,
    read_articles,
    read_behaviors,
    read_history,
)
from newsrec.data.ebnerd.schema import EbnerdFormatError
from newsrec.data.info import SplitPaths
from newsrec.data.mind import Report, tokenize
from newsrec.data.news_table import PAD, UNK, pad_tokens, ranked_vocabulary
from newsrec.data.ragged import keep_last, lengths_to_offsets, slices, take_rows

FIELDS = {"title": "title", "abstract": "subtitle"}  # news-table text -> article column


def _folders(paths: SplitPaths) -> dict[str, Path]:
    folders = {"train": paths.train, "dev": paths.dev, "test": paths.test}
    return {k: Path(v) for k, v in folders.items() if v is not None}


def build_ebnerd(
    paths: SplitPaths, cfg: PreprocessConfig, vocab: Vocabulary | None, bar
) -> Preprocessed:
    """Read the EB-NeRD layout of `paths` and build every array (see the module docstring)."""
    report = Report()
    task = bar.add_task("EB-NeRD articles", total=1)
    articles = read_articles(paths.articles)
    report.add("duplicate article rows (first kept)", articles.duplicates)
    bar.advance(task)
    splits_raw = {}
    for split, folder in _folders(paths).items():
        task = bar.add_task(f"EB-NeRD {split} behaviors and history", total=1)
        impressions = read_behaviors(folder / "behaviors.parquet", labeled=split != "test")
        splits_raw[split] = (impressions, *read_history(folder / "history.parquet"))
        bar.advance(task)
    row_of = _article_rows(articles.ids)
    if vocab is None:
        vocab = _vocabulary(articles, splits_raw["train"], row_of, cfg)
    news = _news_table(articles, vocab, cfg, report)
    features = ("title", "abstract", "category", "subcategory")
    if paths.document_vectors is not None:
        news["document_vector"] = _document_vectors(paths, articles.ids, row_of, report)
        features += ("document_vector",)
    train_time = splits_raw["train"][0].time
    val_start = (int(train_time.max()) // DAY - cfg.val_days + 1) * DAY
    if not vocab.users:
        fit = splits_raw["train"][0].user[train_time < val_start]
        vocab.users = ["<unseen>", *sorted(str(u) for u in np.unique(fit).tolist())]
    user_ids = np.array([int(u) for u in vocab.users[1:]], dtype=np.int64)
    splits = {}
    for split, (impressions, hist_users, hist) in splits_raw.items():
        arrays = _split_arrays(impressions, hist_users, hist, row_of, cfg, report)
        arrays.user = _user_rows(impressions.user, user_ids)
        report.add(
            f"{split} impressions of users unseen in training", int((arrays.user == 0).sum())
        )
        if paths.has_truth:
            folder = _folders(paths)[split]
            arrays.truth = _click_probabilities(folder, impressions)
        splits[split] = arrays
    return Preprocessed(
        config=cfg,
        vocab=vocab,
        news=news,
        entity_vectors=np.zeros((1, 100), dtype=np.float32),
        splits=splits,
        val_start=val_start,
        report=dict(report.counts),
        features=features,
    )


def _article_rows(ids: np.ndarray):
    """A function: article ids -> news-table rows int32 (k + 1 for the k-th article, 0 if
    absent). EB-NeRD's ids are 7-digit numbers: a dense lookup table (40 MB) answers with one
    gather, where a sorted search would need several arrays of the values' size."""
    top = int(ids.max(initial=0)) + 1
    if len(ids) and ids.min() >= 0 and top <= 4 * len(ids) + (1 << 24):
        lookup = np.zeros(top, dtype=np.int32)
        lookup[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)

        def rows(values: np.ndarray) -> np.ndarray:
            rows = lookup[np.clip(values, 0, top - 1)]
            rows[(values < 0) | (values >= top)] = 0
            return rows

        return rows
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]

    def rows_sorted(values: np.ndarray) -> np.ndarray:
        if not len(sorted_ids):
            return np.zeros(len(values), dtype=np.int32)
        at = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
        return np.where(sorted_ids[at] == values, order[at] + 1, 0).astype(np.int32)

    return rows_sorted


def _vocabulary(articles: Articles, train, row_of, cfg: PreprocessConfig) -> Vocabulary:
    """Words, categories and subcategories of the articles train shows or holds in histories."""
    impressions, _users, hist = train
    mark = np.zeros(len(articles.ids) + 1, dtype=bool)
    mark[row_of(impressions.inview.values)] = True
    mark[row_of(hist.values)] = True
    seen = (np.flatnonzero(mark[1:])).tolist()
    words: Counter = Counter()
    for name in cfg.vocab_fields:
        texts = getattr(articles, FIELDS[name])
        for i in seen:
            words.update(tokenize(texts[i]))

    def names(values: list[str]) -> list[str]:
        return ranked_vocabulary(Counter(values[i] for i in seen if values[i]), 1, [UNK])

    return Vocabulary(
        words=ranked_vocabulary(words, cfg.min_word_count, [PAD, UNK]),
        categories=names(articles.category),
        subcategories=names(articles.subcategory),
        users=[],
        entities=["<none>"],
    )


def _news_table(
    articles: Articles, vocab: Vocabulary, cfg: PreprocessConfig, report: Report
) -> dict[str, np.ndarray]:
    word_ix = Vocabulary.index(vocab.words)
    cat_ix, sub_ix = Vocabulary.index(vocab.categories), Vocabulary.index(vocab.subcategories)

    def tokens(texts: list[str]) -> list[list[int]]:
        return [[], *([word_ix.get(w, 1) for w in tokenize(t)] for t in texts)]

    table = {
        "title": pad_tokens(tokens(articles.title), cfg.title_len),
        "abstract": pad_tokens(tokens(articles.subtitle), cfg.abstract_len),
        "category": np.array([0, *(cat_ix.get(c, 0) for c in articles.category)], np.int32),
        "subcategory": np.array([0, *(sub_ix.get(c, 0) for c in articles.subcategory)], np.int32),
    }
    report.add("articles with an empty title", sum(1 for t in articles.title if not t.strip()))
    report.add("title tokens not in the vocabulary (<unk>)", int((table["title"][1:] == 1).sum()))
    return table


def _document_vectors(paths: SplitPaths, ids: np.ndarray, row_of, report: Report) -> np.ndarray:
    table = None
    have = np.zeros(len(ids) + 1, dtype=bool)
    for vector_ids, matrix in iter_document_vectors(
        paths.document_vectors, paths.document_vector_column
    ):
        if table is None:
            table = np.zeros((len(ids) + 1, matrix.shape[1]), dtype=np.float32)
        rows = row_of(vector_ids)
        table[rows[rows > 0]] = matrix[rows > 0]
        have[rows[rows > 0]] = True
    if table is None:
        raise EbnerdFormatError(paths.document_vectors, "file", "no document vector in it")
    report.add("articles without a document vector (zero vector)", int((~have[1:]).sum()))
    return table


def _split_arrays(
    impressions: Impressions, hist_users: np.ndarray, hist, row_of, cfg, report: Report
) -> SplitArrays:
    n = len(impressions.impression_id)
    candidates = row_of(impressions.inview.values)
    report.add(
        "in-view articles missing from articles.parquet (scored as empty news)",
        int((candidates == 0).sum()),
    )
    labels = np.full(len(candidates), -1, dtype=np.int8)
    if impressions.clicked is not None:
        labels = impressions.labels
        owner = np.repeat(np.arange(n), impressions.inview.lengths())
        clicks = np.bincount(owner, weights=labels, minlength=n)
        report.add("labeled impressions without a click", int((clicks == 0).sum()))
        report.add(
            "impressions with several clicks (a training sample each)", int((clicks > 1).sum())
        )
    history_offsets, history, history_id = _histories(
        impressions.user, hist_users, hist, row_of, cfg, report
    )
    ids = impressions.impression_id.copy()
    if impressions.beyond_accuracy is not None and impressions.beyond_accuracy.any():
        beyond = impressions.beyond_accuracy
        ids[beyond] = ids[~beyond].max(initial=0) + 1 + np.arange(int(beyond.sum()))
        report.add("beyond-accuracy impressions (test set; impression id 0)", int(beyond.sum()))
    return SplitArrays(
        impression_id=ids,
        user=np.zeros(n, dtype=np.int64),
        time=impressions.time,
        history_offsets=history_offsets,
        history=history,
        history_id=history_id,
        candidate_offsets=impressions.inview.offsets,
        candidates=candidates.astype(np.int32),
        labels=labels,
    )


def _histories(users, hist_users, hist, row_of, cfg, report: Report):
    """Each impression's history: its user's row, news rows, the last history_len kept."""
    rows = row_of(hist.values)
    report.add("history articles missing from articles.parquet (dropped)", int((rows == 0).sum()))
    offsets, values = keep_last(hist.offsets, rows, rows > 0, cfg.history_len)
    order = np.argsort(hist_users)
    at = np.minimum(np.searchsorted(hist_users[order], users), max(len(order) - 1, 0))
    found = (hist_users[order][at] == users) if len(order) else np.zeros(len(users), bool)
    report.add("impressions of users without a history row (empty history)", int((~found).sum()))
    # users without a row read an extra empty row at the end
    offsets = np.append(offsets, offsets[-1])
    owner = np.where(found, order[at] if len(order) else 0, len(offsets) - 2)
    out = lengths_to_offsets(np.diff(offsets)[owner])
    history = np.empty(int(out[-1]), dtype=np.int32)
    for part in slices(len(owner), 1 << 16):  # bounded temporaries: int64 gather indices
        rows = owner[part]
        history[out[part.start] : out[part.start + len(rows)]] = take_rows(offsets, values, rows)
    return out, history, owner.astype(np.int64)


def _user_rows(users: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Rows of `users` in the user vocabulary (its ids `known`, in vocabulary order), 0 unseen."""
    order = np.argsort(known)
    if not len(order):
        return np.zeros(len(users), dtype=np.int64)
    at = np.minimum(np.searchsorted(known[order], users), len(order) - 1)
    return np.where(known[order][at] == users, order[at] + 1, 0).astype(np.int64)


def _click_probabilities(folder: Path, impressions: Impressions) -> np.ndarray:
    """The synthetic world's click_probability.parquet, checked against behaviors.parquet."""
    path = folder / "click_probability.parquet"
    table = pq.read_table(path)
    ids = table["impression_id"].to_numpy().astype(np.int64)
    column = table["click_probability"].combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    if (
        len(ids) != len(impressions.impression_id)
        or (ids != impressions.impression_id).any()
        or len(flat) != len(impressions.inview.values)
    ):
        raise EbnerdFormatError(path, "file", "it does not match behaviors.parquet row for row")
    return flat
