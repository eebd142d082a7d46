"""Turn MIND-format folders into index arrays: the news table (`newsrec.data.news_table`),
vocabularies, impressions.

Everything a model needs is derived here from the data (vocabulary and table sizes are never
written into a config by hand) and cached on disk (`newsrec.data.cache`: the folder layout,
the key, and why .npy). EB-NeRD's parquet layout (`SplitPaths.layout == "ebnerd"`) is built
into the same arrays by `newsrec.data.ebnerd.build`; Arrow earns its place one step earlier,
parsing the TSV and parquet files (see `newsrec.data.mind`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from newsrec.constants import DAY
from newsrec.data.arrays import PreprocessConfig, Preprocessed, SplitArrays, Vocabulary
from newsrec.data.cache import (  # noqa: F401  (CACHE_VERSION, load, save: part of this API)
    CACHE_VERSION,
    cache_key,
    load,
    same_vocabulary,
    save,
    seen,
)
from newsrec.data.checks import check_news_coverage
from newsrec.data.info import NEWS_FEATURES, SplitPaths
from newsrec.data.mind import (
    Behaviors,
    Report,
    check_unique_impressions,
    iter_behaviors,
    load_click_probabilities,
    read_entity_embeddings,
    read_news,
)
from newsrec.data.news_table import build_news_table
from newsrec.data.ragged import keep_last, lengths_to_offsets
from newsrec.utils.progress import progress_bar

log = logging.getLogger(__name__)

# --- building -------------------------------------------------------------------------------


def _sequence_ids(offsets: np.ndarray, values: np.ndarray, limit: int) -> np.ndarray:
    """An id per row, equal for rows holding the same sequence (64-bit hash, then unique)."""
    rng = np.random.default_rng(12345)
    weights = rng.integers(1, 2**63, size=limit + 1, dtype=np.uint64) | np.uint64(1)
    lengths = np.diff(offsets)
    position = np.arange(len(values)) - np.repeat(offsets[:-1], lengths)
    with np.errstate(over="ignore"):
        mixed = (values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)) * weights[position]
        mixed ^= mixed >> np.uint64(29)
        hashes = np.zeros(len(lengths), dtype=np.uint64)
        nonempty = lengths > 0
        if len(values):  # reduceat over non-empty rows only: it misreads empty segments
            hashes[nonempty] = np.add.reduceat(mixed, offsets[:-1][nonempty])
        hashes += lengths.astype(np.uint64) * weights[-1]
    _, ids = np.unique(hashes, return_inverse=True)
    return ids.astype(np.int64)


_MISSING = (
    "history news missing from news.tsv (dropped)",
    "candidate news missing from news.tsv (scored as empty news)",
)


def _map_behaviors(
    chunk: Behaviors, news_index: pa.Array, cfg: PreprocessConfig, report: Report
) -> dict[str, np.ndarray]:
    hist_flat = pc.index_in(chunk.history.values, value_set=news_index)
    hist_missing = hist_flat.is_null().to_numpy(zero_copy_only=False)
    hist_rows = pc.fill_null(hist_flat, -1).to_numpy() + 1
    report.add(_MISSING[0], int(hist_missing.sum()))
    hist_offsets, hist_values = keep_last(
        chunk.history.offsets.to_numpy().astype(np.int64), hist_rows, ~hist_missing, cfg.history_len
    )
    report.add("impressions with an empty history", int((np.diff(hist_offsets) == 0).sum()))
    cand_flat = pc.index_in(chunk.candidates.values, value_set=news_index)
    report.add(_MISSING[1], cand_flat.null_count)
    cand_rows = pc.fill_null(cand_flat, -1).to_numpy() + 1
    labels = chunk.labels if chunk.labels is not None else np.full(len(cand_rows), -1, np.int8)
    if chunk.labels is not None:
        clicks = np.add.reduceat(labels, chunk.candidates.offsets.to_numpy()[:-1])
        report.add("labeled impressions without a click", int((clicks == 0).sum()))
    return {
        "impression_id": chunk.impression_id,
        "time": chunk.time,
        "history_lengths": np.diff(hist_offsets),
        "history": hist_values.astype(np.int32),
        "candidate_lengths": np.diff(chunk.candidates.offsets.to_numpy()).astype(np.int64),
        "candidates": cand_rows.astype(np.int32),
        "labels": labels.astype(np.int8),
    }


_BLOCK = 64 << 20  # bytes of behaviors.tsv read at a time (bounded memory on MIND-large)


def _read_split(
    folder: Path,
    news_index: pa.Array,
    cfg: PreprocessConfig,
    report: Report,
    advance=lambda: None,
) -> tuple[dict[str, np.ndarray], pa.Array]:
    parts, users = [], []
    missing_before, entries = sum(report.counts[k] for k in _MISSING), 0
    for chunk in iter_behaviors(folder / "behaviors.tsv", block_size=_BLOCK):
        parts.append(_map_behaviors(chunk, news_index, cfg, report))
        users.append(chunk.user)
        entries += len(chunk.history.values) + len(chunk.candidates.values)
        advance()
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    check_unique_impressions(folder / "behaviors.tsv", arrays["impression_id"])
    missing = sum(report.counts[k] for k in _MISSING) - missing_before
    limits = (cfg.max_missing_news, cfg.warn_missing_news)
    check_news_coverage(folder / "news.tsv", folder.name, missing, entries, *limits)
    return arrays, pa.concat_arrays(users)


def _truth(folder: Path, impression_id: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    probs = load_click_probabilities(folder)
    flat = np.concatenate([probs[int(i)] for i in impression_id]).astype(np.float32)
    if len(flat) != lengths.sum():
        raise ValueError(f"{folder / 'click_probability.tsv'} does not match behaviors.tsv")
    return flat


def build(
    paths: SplitPaths,
    cfg: PreprocessConfig,
    vocab: Vocabulary | None = None,
    progress: bool = False,
) -> Preprocessed:
    """Read the split folders and build every array (no cache; see `load_or_build`).

    `progress` draws a Rich bar per step: news, each split's behaviors (in 64 MiB blocks)
    and its click probabilities; MIND-large takes minutes."""
    folders = {"train": paths.train, "dev": paths.dev, "test": paths.test}
    folders = {k: Path(v) for k, v in folders.items() if v is not None}
    with progress_bar(progress) as bar:
        if paths.layout == "ebnerd":  # parquet files
            from newsrec.data.ebnerd.build import build_ebnerd

            return build_ebnerd(paths, cfg, vocab, bar)
        return _build(folders, paths.has_truth, cfg, vocab, bar)


def _build(
    folders: dict[str, Path], has_truth: bool, cfg: PreprocessConfig, vocab, bar
) -> Preprocessed:
    report = Report()
    ids, table, vocab_built = _read_news(folders, cfg, vocab, report, bar)
    news_index = pa.array(ids, pa.string())
    entity_vectors = _entity_vectors(folders, vocab_built.entities, report)
    splits: dict[str, SplitArrays] = {}
    raw_users: dict[str, pa.Array] = {}
    for split, folder in folders.items():
        splits[split], raw_users[split] = _split_arrays(
            split, folder, news_index, has_truth, cfg, report, bar
        )
    train = splits["train"]
    last_day = int(train.time.max()) // DAY
    val_start = (last_day - cfg.val_days + 1) * DAY
    if vocab is None:
        # Users are known from the part of train the model is fitted on, not from validation.
        fit_users = raw_users["train"].filter(pa.array(train.time < val_start))
        vocab_built.users = ["<unseen>", *sorted(pc.unique(fit_users).to_pylist())]
    _index_users(splits, raw_users, vocab_built.users, report)
    return Preprocessed(
        config=cfg,
        vocab=vocab_built,
        news=table,
        entity_vectors=entity_vectors,
        splits=splits,
        val_start=val_start,
        report=dict(report.counts),
        features=_features(table),
    )


def _read_news(
    folders: dict[str, Path], cfg: PreprocessConfig, vocab, report: Report, bar
) -> tuple[list[str], dict[str, np.ndarray], Vocabulary]:
    """Every split's news.tsv as one news table: (news ids, the table, its vocabulary)."""
    task = bar.add_task("news: reading, tokenising", total=len(folders) + 1)
    news_by_split = {}
    for split, folder in folders.items():
        news_by_split[split] = read_news(folder / "news.tsv", report)
        bar.advance(task)
    ids, table, vocab_built, news_report = build_news_table(news_by_split, cfg, vocab)
    bar.advance(task)
    report.counts.update(news_report.counts)
    return ids, table, vocab_built


def _split_arrays(
    split: str,
    folder: Path,
    news_index: pa.Array,
    has_truth: bool,
    cfg: PreprocessConfig,
    report: Report,
    bar,
) -> tuple[SplitArrays, pa.Array]:
    """One split's impressions (users still unindexed: user 0) and their user names."""
    size = (folder / "behaviors.tsv").stat().st_size
    task = bar.add_task(f"{split} behaviors", total=max(1, -(-size // _BLOCK)))
    arrays, users = _read_split(
        folder, news_index, cfg, report, advance=lambda task=task: bar.advance(task)
    )
    bar.update(task, completed=bar.tasks[task].total)
    hist_offsets = lengths_to_offsets(arrays["history_lengths"])
    out = SplitArrays(
        impression_id=arrays["impression_id"].astype(np.int64),
        user=np.zeros(len(arrays["time"]), dtype=np.int64),
        time=arrays["time"].astype(np.int64),
        history_offsets=hist_offsets,
        history=arrays["history"],
        history_id=_sequence_ids(hist_offsets, arrays["history"], cfg.history_len),
        candidate_offsets=lengths_to_offsets(arrays["candidate_lengths"]),
        candidates=arrays["candidates"],
        labels=arrays["labels"],
    )
    if has_truth:
        task = bar.add_task(f"{split} click probabilities", total=1)
        out.truth = _truth(folder, out.impression_id, arrays["candidate_lengths"])
        bar.advance(task)
    return out, users


def _index_users(
    splits: dict[str, SplitArrays], raw_users: dict[str, pa.Array], users: list[str], report
) -> None:
    """Each impression's user as a row of the user vocabulary `users` (0: unseen)."""
    user_index = pa.array(users[1:], pa.string())
    for split, arrays in splits.items():
        rows = pc.index_in(raw_users[split], value_set=user_index)
        arrays.user = pc.fill_null(rows, -1).to_numpy().astype(np.int64) + 1
        report.add(
            f"{split} impressions of users unseen in training", int((arrays.user == 0).sum())
        )


def _features(table: dict[str, np.ndarray]) -> tuple[str, ...]:
    """All of MIND's news features, title entities only where the files name some (xMIND's
    translated news have none: MIND's offsets point into the English text)."""
    return tuple(f for f in NEWS_FEATURES if f != "title_entities" or table[f].any())


def _entity_vectors(folders: dict[str, Path], entities: list[str], report: Report) -> np.ndarray:
    index = Vocabulary.index(entities)
    found: dict[int, np.ndarray] = {}
    dim = 100
    for folder in folders.values():
        path = folder / "entity_embedding.vec"
        if not path.exists():
            continue
        ids, matrix = read_entity_embeddings(path)
        if not len(ids):
            report.add("empty entity_embedding.vec files (no entity vectors from them)")
            continue
        dim = matrix.shape[1]
        for wikidata_id, row in zip(ids, matrix, strict=True):
            if wikidata_id in index:
                found.setdefault(index[wikidata_id], row)
    vectors = np.zeros((len(entities), dim), dtype=np.float32)
    for i, row in found.items():
        vectors[i] = row
    report.add("title entities without an embedding (zero vector)", len(entities) - 1 - len(found))
    return vectors


def load_or_build(
    paths: SplitPaths,
    cfg: PreprocessConfig,
    cache_root: Path | str,
    vocab: Vocabulary | None = None,
    progress: bool = True,
) -> Preprocessed:
    """The cached preprocessing of `paths` under `cfg`, building it on a miss (with Rich
    progress bars unless `progress=False`).

    With a `vocab` (a checkpoint's), the cache that training built without one is reused
    when its vocabularies are that one: eval.py on MIND-large would otherwise preprocess the
    whole data set again (~90 s) to obtain the same arrays.
    """
    folder = Path(cache_root) / cache_key(paths, cfg, vocab)
    if vocab is not None and not (folder / "meta.json").exists():
        built = Path(cache_root) / cache_key(paths, cfg, None)
        if same_vocabulary(built, vocab):
            folder = built
    if (folder / "meta.json").exists():
        try:
            announced = seen(folder)
            data = load(folder)
            # Said once per process: Lightning prepares the data at each fit/validate/test.
            (log.debug if announced else log.info)("preprocessed data loaded from %s", folder)
            return data
        except (OSError, ValueError, KeyError, TypeError) as e:  # damaged: rebuilt, not trusted
            log.warning("cache %s is damaged (%s): rebuilding it", folder, e)
    start = time.perf_counter()
    log.info("preprocessing %s (cache: %s)", paths.train.parent, folder)
    data = build(paths, cfg, vocab, progress=progress)
    for line in Report(Counter(data.report)).lines():
        log.info("data report: %s", line)
    save(data, folder)
    log.info("preprocessing took %.1f s", time.perf_counter() - start)
    return data
