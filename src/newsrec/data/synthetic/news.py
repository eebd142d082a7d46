"""The synthetic world's story, step 4: news with titles, abstracts and entities.

A title is a shuffled bag of units (topical words, fillers, modifiers, entity mentions); its
*meaning*, the news' latent vector, comes from the topical words as the modifiers within
reach change them, so the same words in another order mean something else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np

from newsrec.data.ragged import lengths_to_offsets
from newsrec.data.synthetic.config import DAY, INTENSIFIERS, NEGATIONS
from newsrec.data.synthetic.state import World
from newsrec.data.synthetic.streams import draw_from_cdf, random_units, stream, unit, zipf_cdf


def subcategory_in(w: World, category: np.ndarray, u: np.ndarray) -> np.ndarray:
    """A uniformly chosen subcategory of each category (`u`: uniforms in [0, 1))."""
    first = np.searchsorted(w.sub_category, category, side="left")
    count = np.searchsorted(w.sub_category, category, side="right") - first
    return first + (u * count).astype(np.int64)


def _entity_json(mentions: list[tuple[int, int, str, float]], w: World) -> str:
    """MIND's entity column: one object per entity, with every offset and surface form."""
    objects: dict[int, dict] = {}
    for entity, offset, surface, confidence in mentions:
        obj = objects.get(entity)
        if obj is None:
            obj = objects[entity] = {
                "Label": w.entity_label[entity],
                "Type": w.entity_type[entity],
                "WikidataId": w.entity_qid[entity],
                "Confidence": confidence,
                "OccurrenceOffsets": [],
                "SurfaceForms": [],
            }
        obj["OccurrenceOffsets"].append(offset)
        obj["SurfaceForms"].append(surface)
    return json.dumps(list(objects.values()))


def _draw_units(
    w: World,
    rng: np.random.Generator,
    sub: np.ndarray,
    length: np.ndarray,
    n_mod: np.ndarray,
    n_ent: np.ndarray,
) -> tuple[list[list[tuple[int, int]]], np.ndarray]:
    """The words of a text per news, in order, as (kind, id) units.

    kind 0: a word id (topical, common or modifier), 1: an entity id (full surface form),
    2: an entity id (short surface form). Returns the units and the word count per news.
    """
    cfg, n = w.cfg, len(sub)
    per_sub = cfg.topical_words_per_subcategory
    n_top = np.clip(rng.binomial(np.maximum(length, 1), cfg.topical_share), 1, None)
    # topical words: the news' own subcategory, or now and then a sibling of it
    news_of_top = np.repeat(np.arange(n), n_top)
    top_sub = sub[news_of_top]
    sibling = rng.random(len(top_sub)) < cfg.offtopic_word_share
    other = subcategory_in(w, w.sub_category[top_sub], rng.random(len(top_sub)))
    top_sub = np.where(sibling, other, top_sub)
    top_word = w.first_topical + top_sub * per_sub + rng.integers(0, per_sub, len(top_sub))
    # modifiers
    news_of_mod = np.repeat(np.arange(n), n_mod)
    is_neg = rng.random(len(news_of_mod)) < cfg.negation_share
    first_mod = w.first_topical - len(NEGATIONS) - len(INTENSIFIERS)
    mod_word = np.where(
        is_neg,
        first_mod + rng.integers(0, len(NEGATIONS), len(news_of_mod)),
        first_mod + len(NEGATIONS) + rng.integers(0, len(INTENSIFIERS), len(news_of_mod)),
    )
    news_of_ent, ent, short, ent_words = _draw_entities(w, rng, sub, n_ent)
    used = n_top + n_mod + np.bincount(news_of_ent, weights=ent_words, minlength=n).astype(int)
    n_fill = np.maximum(length - used, 0)
    news_of_fill = np.repeat(np.arange(n), n_fill)
    fill_word = draw_from_cdf(w.common_cdf, rng.random(len(news_of_fill)))
    # all units, shuffled within each news
    news_of = np.concatenate([news_of_top, news_of_mod, news_of_ent, news_of_fill])
    kind = np.concatenate(
        [
            np.zeros(len(top_word), np.int64),
            np.zeros(len(mod_word), np.int64),
            np.where(short, 2, 1),
            np.zeros(len(fill_word), np.int64),
        ]
    )
    ident = np.concatenate([top_word, mod_word, ent, fill_word])
    order = np.lexsort((rng.random(len(news_of)), news_of))
    counts = np.bincount(news_of, minlength=n)
    pairs = list(zip(kind[order].tolist(), ident[order].tolist(), strict=True))
    starts = lengths_to_offsets(counts)[:-1].tolist()
    units = [pairs[s : s + c] for s, c in zip(starts, counts.tolist(), strict=True)]
    return units, used + n_fill


def _draw_entities(
    w: World, rng: np.random.Generator, sub: np.ndarray, n_ent: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`n_ent` entities per news from its subcategory, Zipf-popular within it: (news of each,
    entity, short surface form or not, words it takes)."""
    cfg = w.cfg
    news_of_ent = np.repeat(np.arange(len(sub)), n_ent)
    ent_cdf = zipf_cdf(cfg.entities_per_subcategory, 1.0)
    ent = sub[news_of_ent] * cfg.entities_per_subcategory + draw_from_cdf(
        ent_cdf, rng.random(len(news_of_ent))
    )
    short = (rng.random(len(ent)) < 0.3) & np.array(
        [w.entity_label[e] != w.entity_short[e] for e in ent], dtype=bool
    )
    ent_words = np.array([len(w.entity_label[e].split()) for e in ent], dtype=np.int64)
    return news_of_ent, ent, short, np.where(short, 1, ent_words)


def _render(
    w: World, units: list[tuple[int, int]], confidences: Iterator[float], title: bool
) -> tuple[str, str, list[tuple[int, float]]]:
    """Text, entity JSON and (topical word, factor) terms of one title or abstract."""
    cfg, factors = w.cfg, w.modifier_factor
    tokens: list[str] = []
    mentions: list[tuple[int, int, str, float]] = []
    offset = 0
    topical: list[tuple[int, float]] = []  # (word id, factor)
    pending: list[tuple[int, float]] = []  # modifiers waiting for a word: (position, factor)
    position = 0
    for kind, ident in units:
        if kind == 0:
            text = w.words[ident]
            if ident in factors:
                pending.append((position, factors[ident]))
            elif ident >= w.first_topical:
                # each pending modifier within reach acts on this word (the first topical
                # word after it); those out of reach can reach no later word either
                factor = 1.0
                for mod_pos, mod_factor in pending:
                    if position - mod_pos <= cfg.modifier_reach:
                        factor *= mod_factor
                pending = []
                topical.append((ident, factor))
            position += 1
        else:
            text = w.entity_label[ident] if kind == 1 else w.entity_short[ident]
            mentions.append((ident, offset, text, next(confidences)))
            position += text.count(" ") + 1
        tokens.append(text)
        offset += len(text) + 1
    if title and tokens and units[0][0] == 0:
        tokens[0] = tokens[0][:1].upper() + tokens[0][1:]
    text = " ".join(tokens)
    if not title and text:
        text += "."  # an abstract is a sentence
    return text, _entity_json(mentions, w), topical


def build_news(w: World) -> None:
    """Step 4: every news' time, topic, title, abstract, entities and latent vector."""
    cfg, rng = w.cfg, stream(w.seed, "news")
    n = cfg.num_news
    _publication(w, rng)
    cat = draw_from_cdf(w.category_cdf, rng.random(n))
    sub = subcategory_in(w, cat, rng.random(n))
    title_units, abs_units, mentions = _draw_texts(w, rng, sub)
    conf = np.where(rng.random(mentions) < 0.5, 1.0, np.round(rng.uniform(0.5, 1.0, mentions), 3))
    ids = rng.permutation(n) + 1
    url_codes = rng.integers(36**5, 36**6, n)
    hidden = cfg.news_hidden_noise * random_units(rng, n, cfg.latent_dim)
    terms, title_entities = _news_lines(
        w, (cat, sub), (title_units, abs_units), iter(conf.tolist()), ids, url_codes
    )
    w.latent = _latent(w, terms, title_entities, hidden)


def _publication(w: World, rng: np.random.Generator) -> None:
    """Publication times (a share in the history window, the rest over the impression days),
    ends of life and popularity of every news."""
    cfg, n = w.cfg, w.cfg.num_news
    n_hist = round(cfg.history_news_share * n)
    impression_days = cfg.train_days + cfg.dev_days + cfg.test_days
    pub = np.concatenate(
        [
            -cfg.history_days * DAY * rng.random(n_hist),
            impression_days * DAY * rng.random(n - n_hist),
        ]
    )
    pub = np.sort(np.floor(pub))
    life_mu = np.log(cfg.news_lifetime_days) - cfg.news_lifetime_sigma**2 / 2
    w.pub = pub
    w.end = pub + DAY * rng.lognormal(life_mu, cfg.news_lifetime_sigma, n)
    w.log_pop = cfg.popularity_sigma * rng.standard_normal(n)


def _draw_texts(w: World, rng: np.random.Generator, sub: np.ndarray) -> tuple[list, list, int]:
    """The units (words and entities) of every title and abstract, and how many entity
    mentions need a confidence (+ 1)."""
    cfg, n = w.cfg, w.cfg.num_news
    title_len = np.clip(np.round(rng.normal(cfg.title_words_mean, cfg.title_words_std, n)), 3, 40)
    title_mod = np.minimum(rng.poisson(cfg.modifier_rate, n), 3)
    title_ent = np.minimum(rng.poisson(cfg.title_entities_mean, n), 2)
    title_units, title_words = _draw_units(
        w, rng, sub, title_len.astype(np.int64), title_mod, title_ent
    )
    w.title_words = int(title_words.sum())
    abs_len = np.clip(
        np.round(rng.normal(cfg.abstract_words_mean, cfg.abstract_words_std, n)), 5, 150
    )
    abs_len = np.where(rng.random(n) < cfg.abstract_empty_share, 0, abs_len).astype(np.int64)
    abs_ent = np.where(abs_len > 0, np.minimum(rng.poisson(cfg.abstract_entities_mean, n), 4), 0)
    abs_units, _ = _draw_units(w, rng, sub, abs_len, np.zeros(n, np.int64), abs_ent)
    for i in range(n):
        if abs_len[i] == 0:
            abs_units[i] = []
    return title_units, abs_units, int(title_ent.sum() + abs_ent.sum()) + 1


def _news_lines(
    w: World,
    topics: tuple[np.ndarray, np.ndarray],
    units: tuple[list, list],
    confidences: Iterator[float],
    ids: np.ndarray,
    url_codes: np.ndarray,
) -> tuple[tuple[list, list, list], tuple[list, list]]:
    """Every news' news.tsv row, id and entities into `w`; -> the modified topical words
    (news, word, factor) and the title entities (news, entity) its latent vector sums."""
    (cat, sub), (title_units, abs_units) = topics, units
    term_news, term_word, term_factor = [], [], []
    title_entity_news, title_entity = [], []
    for i in range(w.cfg.num_news):
        title, title_json, terms = _render(w, title_units[i], confidences, title=True)
        abstract, abstract_json, _ = _render(w, abs_units[i], confidences, title=False)
        for word, factor in terms:
            term_news.append(i)
            term_word.append(word)
            term_factor.append(factor)
        t_ents = [ident for kind, ident in title_units[i] if kind != 0]
        title_entity_news.extend([i] * len(t_ents))
        title_entity.extend(t_ents)
        a_ents = [ident for kind, ident in abs_units[i] if kind != 0]
        w.news_entities.append(sorted(set(t_ents + a_ents)))
        nid = f"N{ids[i]}"
        w.news_id.append(nid)
        url = f"https://assets.msn.com/labs/mind/AA{np.base_repr(url_codes[i], 36)}.html"
        w.news_line.append(
            f"{nid}\t{w.categories[cat[i]]}\t{w.subcategories[sub[i]]}\t{title}\t{abstract}"
            f"\t{url}\t{title_json}\t{abstract_json}"
        )
    return (term_news, term_word, term_factor), (title_entity_news, title_entity)


def _latent(
    w: World, terms: tuple[list, list, list], title_entities: tuple[list, list], hidden: np.ndarray
) -> np.ndarray:
    """Latent vectors: modified topical words + title entities, normalised, + hidden noise."""
    cfg = w.cfg
    text_vec = np.zeros((cfg.num_news, cfg.latent_dim))
    term_news, term_word, term_factor = terms
    np.add.at(
        text_vec,
        np.array(term_news, np.int64),
        np.array(term_factor)[:, None] * w.word_vec[np.array(term_word, np.int64)],
    )
    title_entity_news, title_entity = title_entities
    if title_entity:
        np.add.at(
            text_vec,
            np.array(title_entity_news, np.int64),
            cfg.entity_weight * w.entity_vec[np.array(title_entity, np.int64)],
        )
    return unit(unit(text_vec) + hidden).astype(np.float32)
