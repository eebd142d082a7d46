"""The news table from news.tsv rows (`build_news_table`): one row of vocabulary indices per
news (title, abstract, category, subcategory, title entities), row 0 the padding news.

EB-NeRD's preprocessing (`newsrec.data.ebnerd.build`) builds its table with the same pieces:
the reserved names, the order of a vocabulary, token rows cut and padded to one length."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from newsrec.data.arrays import PreprocessConfig, Vocabulary
from newsrec.data.mind import News, Report, token_spans, tokenize

log = logging.getLogger(__name__)

PAD, UNK = "<pad>", "<unk>"


def ranked_vocabulary(counts: Counter, min_count: int, reserved: list[str]) -> list[str]:
    """`reserved`, then the names seen at least `min_count` times."""
    # Most frequent first, ties by name: deterministic whatever the file order.
    kept = sorted((n for n, c in counts.items() if c >= min_count), key=lambda n: (-counts[n], n))
    return reserved + kept


def pad_tokens(rows: list[list[int]], length: int) -> np.ndarray:
    """int32 [len(rows), length]: each row's first `length` ids, zeros (padding) after."""
    out = np.zeros((len(rows), length), dtype=np.int32)
    for i, row in enumerate(rows):
        row = row[:length]
        out[i, : len(row)] = row
    return out


def build_news_table(
    news_by_split: dict[str, News], cfg: PreprocessConfig, given: Vocabulary | None
) -> tuple[list[str], dict[str, np.ndarray], Vocabulary, Report]:
    """(news ids, the news table, its vocabulary: `given`, else built from train, the report).
    Row k + 1 of the table is news `ids[k]`; row 0 is the padding news."""
    report = Report()
    # One table for all splits: dev and test bring news never seen in training (cold start).
    rows: dict[str, tuple[str, int]] = {}
    for split, news in news_by_split.items():
        for i, news_id in enumerate(news.ids):
            rows.setdefault(news_id, (split, i))
    vocab = given if given is not None else _vocabulary(news_by_split, cfg)
    table = _encode_news([(news_by_split[split], i) for split, i in rows.values()], vocab, cfg)
    unk = int((table["title"][1:] == 1).sum())
    known = int((table["title"][1:] > 1).sum())
    report.add("title tokens not in the vocabulary (<unk>)", unk)
    log.info("title tokens in the vocabulary: %.1f%%", 100 * known / max(1, known + unk))
    return list(rows), table, vocab, report


def _vocabulary(news_by_split: dict[str, News], cfg: PreprocessConfig) -> Vocabulary:
    """Words, categories and subcategories of the training news; entities of every split's."""
    train = news_by_split["train"]
    words: Counter = Counter()
    for name in cfg.vocab_fields:
        for text in getattr(train, name):
            words.update(tokenize(text))
    entities: dict[str, None] = {}
    for news in news_by_split.values():
        for spans in news.title_entities:
            entities.update((e, None) for e, _, _ in spans)
    return Vocabulary(
        words=ranked_vocabulary(words, cfg.min_word_count, [PAD, UNK]),
        categories=ranked_vocabulary(Counter(train.category), 1, [UNK]),
        subcategories=ranked_vocabulary(Counter(train.subcategory), 1, [UNK]),
        users=[],  # filled from the training impressions
        entities=["<none>", *sorted(entities)],
    )


def _encode_news(
    rows: list[tuple[News, int]], vocab: Vocabulary, cfg: PreprocessConfig
) -> dict[str, np.ndarray]:
    """The news table of the news `rows` (a news.tsv's rows, and the row in it), after the
    padding news: words, categories and entities as vocabulary indices."""
    word_ix, cat_ix = Vocabulary.index(vocab.words), Vocabulary.index(vocab.categories)
    sub_ix, ent_ix = Vocabulary.index(vocab.subcategories), Vocabulary.index(vocab.entities)
    titles, abstracts, title_entities = [[]], [[]], [[]]
    category, subcategory = [0], [0]
    for news, i in rows:
        spans = token_spans(news.title[i])[: cfg.title_len]
        titles.append([word_ix.get(w, 1) for w, _, _ in spans])
        title_entities.append(_word_entities(spans, news.title_entities[i], ent_ix))
        abstracts.append([word_ix.get(w, 1) for w in tokenize(news.abstract[i])])
        category.append(cat_ix.get(news.category[i], 0))
        subcategory.append(sub_ix.get(news.subcategory[i], 0))
    return {
        "title": pad_tokens(titles, cfg.title_len),
        "abstract": pad_tokens(abstracts, cfg.abstract_len),
        "category": np.asarray(category, dtype=np.int32),
        "subcategory": np.asarray(subcategory, dtype=np.int32),
        "title_entities": pad_tokens(title_entities, cfg.title_len),
    }


def _word_entities(
    spans: list[tuple[str, int, int]],
    mentions: list[tuple[str, int, int]],
    ent_ix: dict[str, int],
) -> list[int]:
    """The entity of each title token (0: none). DKN aligns entities with words: a token
    inside an entity mention gets its entity."""
    ents = [0] * len(spans)
    for wikidata_id, start, end in mentions:
        e = ent_ix.get(wikidata_id, 0)
        for k, (_, s, t) in enumerate(spans):
            if s >= start and t <= end:
                ents[k] = e
    return ents
