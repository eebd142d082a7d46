"""The Lightning DataModule: training samples as in the NRMS paper, evaluation by impression.

Batches are index tensors into the news table (info.py), built by numpy slicing of whole
batches (`__getitems__`), never one sample at a time in Python. The training samples and
their batch sampler are in `newsrec.data.samples`.

Training (NRMS paper, section 3.4): one sample per click of the fitted part of train, with
K non-clicked news (`npratio`, default 4) of the *same impression*, drawn afresh every epoch,
without replacement where the impression has at least K non-clicks and with replacement
where it has fewer (clicks of impressions with no non-click at all cannot form a sample and
are dropped, counted). The clicked news sits at a random position among the 1 + K.

Splits as published (docs/reproduce_mind.md): every day of train is trained on
(`val_days: 0`), validation is `val_split` (dev: MIND's dev split is the last day of the MIND
paper's training week) and test is `test_split` (dev for MIND-small, which has no test split;
the unlabeled leaderboard split for MIND-large and the synthetic worlds). `val_days: N > 0`
holds out the last N days of train for validation instead (the split is then named
'train_last_day', or 'train_last_N_days'), leaving dev as an untouched test set. Evaluation batches group the impressions of the same (user, history), so
each distinct history is encoded once.

DDP: this module shards itself (run with `use_distributed_sampler=False`): each rank takes
a disjoint slice of the epoch's shuffled samples, and disjoint evaluation batches whose
impressions carry their global ids.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from newsrec.data.arrays import PreprocessConfig, Preprocessed, SplitArrays, Vocabulary
from newsrec.data.info import DataInfo, NewsInputs, news_table_tensors
from newsrec.data.mind import DataError
from newsrec.data.plm_tokens import PLM_FEATURES, PlmTokenConfig, load_or_tokenize
from newsrec.data.preprocess import load_or_build
from newsrec.data.ragged import pad_rows, slices, take_rows
from newsrec.data.samples import (  # noqa: F401  (_Batch: part of this API)
    TrainBatchSampler,
    TrainSamples,
    _Batch,
)

log = logging.getLogger(__name__)


class EvalImpressions(Dataset):
    """Impressions of an evaluation split, grouped so each distinct (user, history) is one.

    Groups are ordered by history length and a batch's histories are cut to its longest, so
    the user encoder skips most padding: MIND histories have a median of ~19 of 50 slots,
    and self-attention over them costs the square of the width.
    """

    def __init__(self, split: SplitArrays, rows: np.ndarray, history_len: int):
        self.split = split
        user = np.asarray(split.user)
        key = np.asarray(split.history_id)[rows] * (int(user.max()) + 1) + user[rows]
        offsets = np.asarray(split.history_offsets)
        self.lengths = np.minimum(np.diff(offsets), history_len)  # per impression of the split
        order = np.lexsort((key, self.lengths[rows]))  # by length, then group: groups stay whole
        self.rows, self.group_key = rows[order], key[order]
        self.labels = np.asarray(split.labels)
        self.truth = None if split.truth is None else np.asarray(split.truth)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, positions: np.ndarray) -> dict[str, torch.Tensor]:
        s = self.split
        imp = self.rows[positions]
        _, first, owner = np.unique(
            self.group_key[positions], return_index=True, return_inverse=True
        )
        longest = max(1, int(self.lengths[imp].max()))  # the batch's longest history
        history, history_mask = pad_rows(s.history_offsets, s.history, imp[first], longest)
        width = int(np.diff(s.candidate_offsets)[imp].max())
        candidates, candidate_mask = pad_rows(
            s.candidate_offsets, s.candidates, imp, width, right=True
        )
        labels, _ = pad_rows(s.candidate_offsets, self.labels, imp, width, right=True)
        batch = {
            "history": torch.from_numpy(history),
            "history_mask": torch.from_numpy(history_mask),
            "user": torch.from_numpy(np.asarray(s.user)[imp[first]]),
            "owner": torch.from_numpy(owner.astype(np.int64)),
            "candidates": torch.from_numpy(candidates),
            "candidate_mask": torch.from_numpy(candidate_mask),
            "labels": torch.from_numpy(np.where(candidate_mask, labels, -1)),
            "impression": torch.from_numpy(np.asarray(s.impression_id)[imp]),
        }
        if self.truth is not None:
            truth, _ = pad_rows(
                s.candidate_offsets, self.truth, imp, width, right=True, dtype=np.float32
            )
            batch["truth"] = torch.from_numpy(truth)
        return batch


class EvalBatchSampler:
    """Batches of whole (user, history) groups, about `batch_size` impressions each.

    A group never straddles two batches, so its history is encoded once, unless it alone
    holds more than `batch_size` impressions: then it is cut into batches of `batch_size`
    (its history encoded once per batch). Such crowds are real: MIND's test users unseen in
    training all share user 0, and those without clicks one empty history (26k impressions
    and 1M candidates on MIND-large's scale in one batch otherwise). Rank r takes batches
    r, r + W, ...: disjoint, and impression ids are global, so gathered metrics equal the
    single-process ones.
    """

    def __init__(self, group_key: np.ndarray, batch_size: int, rank: int = 0, world_size: int = 1):
        batch_size = max(1, min(batch_size, -(-len(group_key) // world_size)))  # one per rank
        boundaries = np.flatnonzero(np.diff(group_key)) + 1
        starts = np.concatenate([[0], boundaries]).tolist()
        ends = np.concatenate([boundaries, [len(group_key)]]).tolist()
        batches, begin = [], 0
        for start, end in zip(starts, ends, strict=True):
            if end - start > batch_size:  # a crowd: the batch before it, then its parts
                if begin < start:
                    batches.append((begin, start))
                batches += [(s, min(s + batch_size, end)) for s in range(start, end, batch_size)]
                begin = end
            elif end - begin >= batch_size:
                batches.append((begin, end))
                begin = end
        if begin < len(group_key) or not batches:
            batches.append((begin, len(group_key)))
        # With fewer batches than ranks, some are repeated: harmless, as metrics keep one entry
        # per (impression, candidate) and predictions overwrite the same impression.
        batches = [batches[i % len(batches)] for i in range(max(len(batches), world_size))]
        self.batches = batches[rank::world_size]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for begin, end in self.batches:
            yield np.arange(begin, end)


def _identity(batch):
    return batch


def _tuples(settings: dict) -> dict:
    """Lists from a config (YAML has no tuples) as the tuples the frozen dataclasses hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


class MindDataModule(pl.LightningDataModule):
    """MIND-format data (real or synthetic) as index batches; see the module docstring."""

    def __init__(
        self,
        source,
        data_dir: str = "data",
        cache_dir: str | None = None,
        preprocess: dict | None = None,
        npratio: int = 4,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        test_split: str = "dev",
        val_split: str = "dev",
        seed: int = 0,
        inputs: dict | None = None,  # what the model's news encoder reads (NewsInputs fields)
        language: str | None = None,  # of the news text (ISO 639-3): eng, dan, an xMIND code
    ):
        super().__init__()
        self.source = source
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / "cache"
        # The model's declaration decides what is preprocessed: the texts of the vocabulary
        # (unless a checkpoint's saved settings say otherwise) and any PLM tokenisation.
        inputs = NewsInputs(**_tuples(inputs or {}))
        preprocess = {"vocab_fields": inputs.vocab_fields, **(preprocess or {})}
        self.preprocess_config = PreprocessConfig(**_tuples(preprocess))
        self.npratio, self.batch_size, self.eval_batch_size = npratio, batch_size, eval_batch_size
        self.num_workers, self.test_split, self.seed = num_workers, test_split, seed
        self._val_split = val_split  # used when val_days == 0 (no train day held out)
        self.plm = PlmTokenConfig.from_inputs(inputs)
        self.language = language
        self.vocab: Vocabulary | None = None  # set from a checkpoint to reuse its vocabulary
        self.data: Preprocessed | None = None

    # -- preparing --------------------------------------------------------------------------
    def _load(self) -> Preprocessed:
        self.paths = self.source.prepare(self.data_dir)
        self.has_truth = self.paths.has_truth
        data = load_or_build(self.paths, self.preprocess_config, self.cache_dir, vocab=self.vocab)
        if self.plm is not None:  # PLM news encoders read their own tokenizer's ids
            rows = len(data.news["title"])
            tokens = load_or_tokenize(self.paths, self.plm, self.cache_dir, rows)
            data.news = {**data.news, **tokens}
        return data

    def prepare_data(self) -> None:  # one process per node: download, generate, preprocess
        self._load()

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = self._load()
            train = self.data.splits["train"]
            time = np.asarray(train.time)
            self.fit_rows = np.flatnonzero(time < self.data.val_start)
            self.val_rows = np.flatnonzero(time >= self.data.val_start)
            days = self.preprocess_config.val_days
            if days > 0 and (not len(self.fit_rows) or not len(self.val_rows)):
                raise DataError(
                    f"the time split (last {days} day(s) of train for validation) leaves no "
                    "training or no validation impressions; set data.preprocess.val_days "
                    "(0 trains on every day and validates on dev)"
                )
            for role, name in (("val_split", self.val_split), ("test_split", self.test_split)):
                if name not in self.data.splits and not name.startswith("train_last"):
                    raise DataError(
                        f"data.{role}={name!r}: this dataset has the splits "
                        f"{sorted(self.data.splits)}; pick one of them"
                    )
            if self.val_split in self.data.splits and not self.data.splits[self.val_split].labeled:
                raise DataError(
                    f"data.val_split={self.val_split!r} has no labels to validate on; "
                    "pick a labeled split (dev) or hold out train days (data.preprocess.val_days=1)"
                )

    @property
    def val_split(self) -> str:
        """The split validation reads: dev by default, or the held-out last train day(s)."""
        days = self.preprocess_config.val_days
        if days <= 0:
            return self._val_split
        return "train_last_day" if days == 1 else f"train_last_{days}_days"

    def split_rows(self, split: str) -> tuple[SplitArrays, np.ndarray]:
        """The arrays an evaluation of `split` ('val', 'dev', 'test') reads, and its rows."""
        if split == "val":
            split = self.val_split
        if split.startswith("train_last"):
            return self.data.splits["train"], self.val_rows
        arrays = self.data.splits[split]
        return arrays, np.arange(len(arrays))

    def use_vocabulary(self, vocab: Vocabulary) -> None:
        """Preprocess again with `vocab` (e.g. extended with pretrained words); cached too."""
        self.vocab, self.data = vocab, None
        self.__dict__.pop("_eval_news_rows", None)
        self.__dict__.pop("_train_samples", None)
        self.setup("fit")

    @property
    def info(self) -> DataInfo:
        info = self.data.info()
        info.entity_embeddings = torch.from_numpy(np.array(self.data.entity_vectors))
        return info

    def checkpoint_extra(self) -> dict:
        """What a checkpoint must carry to be evaluated on other data: the vocabularies."""
        vocab = self.data.vocab  # its lists as they are (asdict deep-copies: 8 s on MIND-large)
        return {
            "vocab": {f.name: getattr(vocab, f.name) for f in fields(vocab)},
            "preprocess": asdict(self.preprocess_config),
        }

    @property
    def features(self) -> tuple[str, ...]:
        """The news-table features this data has (a model reading another is refused)."""
        return tuple(self.data.features) + (PLM_FEATURES if self.plm is not None else ())

    def news_table(self) -> dict[str, torch.Tensor]:
        return news_table_tensors(self.data.news)  # ids int64, document vectors float32

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    # -- loaders ----------------------------------------------------------------------------
    def train_samples(self) -> TrainSamples:
        if not hasattr(self, "_train_samples"):
            self._train_samples = TrainSamples(
                self.data.splits["train"],
                self.fit_rows,
                self.npratio,
                self.preprocess_config.history_len,
                self.seed,
            )
            samples = self._train_samples
            log.info("training samples (clicks): %s", f"{len(samples):,}")
            if samples.short:
                log.info(
                    "%s samples come from impressions with fewer than %d non-clicks: "
                    "their negatives are drawn with replacement",
                    f"{samples.short:,}",
                    self.npratio,
                )
            if samples.dropped:
                log.info("%s clicks dropped: their impression has no non-click", samples.dropped)
        return self._train_samples

    def train_dataloader(self) -> DataLoader:
        samples = self.train_samples()
        rank, world = self._rank()
        sampler = TrainBatchSampler(len(samples), self.batch_size, self.seed, rank, world)
        return self._loader(samples, sampler)

    def eval_dataset(self, split: str) -> EvalImpressions:
        arrays, rows = self.split_rows(split)
        return EvalImpressions(arrays, rows, self.preprocess_config.history_len)

    def eval_news(self, split: str) -> torch.Tensor:
        """News rows an evaluation of `split` reads (candidates and histories), row 0 included.

        Computed once per split: validation asks for it every epoch.
        """
        cache = self.__dict__.setdefault("_eval_news_rows", {})
        if split not in cache:
            cache[split] = self._eval_news(split)
        return cache[split]

    def _eval_news(self, split: str) -> torch.Tensor:
        arrays, rows = self.split_rows(split)
        seen = np.zeros(len(self.data.news["title"]), dtype=bool)  # a mark per news row
        seen[0] = True
        for offsets, values in (
            (arrays.candidate_offsets, arrays.candidates),
            (arrays.history_offsets, arrays.history),
        ):
            for part in slices(len(rows), 1 << 18):  # 256k impressions at a time
                seen[take_rows(offsets, values, rows[part])] = True
        return torch.from_numpy(np.flatnonzero(seen))

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self.eval_dataset(split)
        rank, world = self._rank()
        return self._loader(
            dataset, EvalBatchSampler(dataset.group_key, self.eval_batch_size, rank, world)
        )

    def _loader(self, dataset: Dataset, batch_sampler) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=_identity,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_split)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_split)
