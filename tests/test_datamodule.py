"""Training samples, evaluation batches, the splits (published and held-out) and per-rank
sharding."""

from __future__ import annotations

import numpy as np
import pytest

from newsrec.constants import DAY
from newsrec.data.datamodule import (
    EvalBatchSampler,
    MindDataModule,
    TrainBatchSampler,
    TrainSamples,
)
from newsrec.data.mind import DataError
from newsrec.data.synthetic import SyntheticSource


@pytest.fixture(scope="module")
def datamodule(data_dir):
    dm = MindDataModule(
        SyntheticSource("synthetic_tiny"), data_dir=str(data_dir), batch_size=16, eval_batch_size=32
    )
    dm.setup("fit")
    return dm


def impressions_of(split):
    """(clicked, non-clicked) news sets of every impression, straight from the arrays."""
    out = []
    for i in range(len(split)):
        s, e = split.candidate_offsets[i], split.candidate_offsets[i + 1]
        cands, labels = split.candidates[s:e], split.labels[s:e]
        out.append((set(cands[labels == 1].tolist()), set(cands[labels == 0].tolist())))
    return out


def batches(dm, epoch=0):
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(epoch)
    return list(loader)


def test_default_trains_on_every_train_day_and_validates_on_dev(datamodule):
    # The published protocol: no train day held out; checkpoints chosen on dev.
    train = datamodule.data.splits["train"]
    assert len(datamodule.fit_rows) == len(train) and not len(datamodule.val_rows)
    assert datamodule.val_split == "dev"
    arrays, rows = datamodule.split_rows("val")
    assert arrays is datamodule.data.splits["dev"] and len(rows) == len(arrays)
    assert len(datamodule.eval_dataset("val")) == len(datamodule.data.splits["dev"])


def test_held_out_variant_validates_on_the_last_day_of_train(data_dir):
    dm = MindDataModule(
        SyntheticSource("synthetic_tiny"), data_dir=str(data_dir), preprocess={"val_days": 1}
    )
    dm.setup("fit")
    train = dm.data.splits["train"]
    last_day = int(train.time.max()) // DAY
    assert dm.val_split == "train_last_day"
    assert dm.data.val_start == last_day * DAY
    assert (train.time[dm.val_rows] >= last_day * DAY).all()
    assert (train.time[dm.fit_rows] < last_day * DAY).all()
    assert len(dm.fit_rows) + len(dm.val_rows) == len(train)
    assert len(np.unique(train.time[dm.fit_rows] // DAY)) >= 2
    assert len(dm.eval_dataset("val")) == len(dm.val_rows)


def test_an_unlabeled_validation_split_is_refused(data_dir):
    dm = MindDataModule(SyntheticSource("synthetic_tiny"), data_dir=str(data_dir), val_split="test")
    with pytest.raises(DataError, match="val_split='test' has no labels"):
        dm.setup("fit")


def test_one_sample_per_click_of_the_fitted_part(datamodule):
    train = datamodule.data.splits["train"]
    samples = datamodule.train_samples()
    clicks = sum(
        int(train.labels[train.candidate_offsets[i] : train.candidate_offsets[i + 1]].sum())
        for i in datamodule.fit_rows
    )
    assert len(samples) + samples.dropped == clicks


def test_negatives_come_from_the_same_impressions_non_clicks(datamodule):
    train = datamodule.data.splits["train"]
    per_impression = impressions_of(train)
    samples = datamodule.train_samples()
    loader = datamodule.train_dataloader()
    order = np.random.default_rng((datamodule.seed, 0)).permutation(len(samples))
    for b, batch in enumerate(loader):
        idx = order[b * 16 : (b + 1) * 16]
        cands = batch["candidates"].numpy()
        target = batch["target"].numpy()
        for row, sample in enumerate(idx):
            clicked, non_clicked = per_impression[samples.impression[sample]]
            assert cands[row, target[row]] == samples.clicked[sample]
            assert cands[row, target[row]] in clicked
            negatives = np.delete(cands[row], target[row])
            assert set(negatives.tolist()) <= non_clicked
            if len(non_clicked) >= 4:  # enough non-clicks: drawn without replacement
                assert len(set(negatives.tolist())) == 4


def test_negatives_are_drawn_afresh_each_epoch_and_reproducibly(datamodule):
    first, again, second = batches(datamodule, 0), batches(datamodule, 0), batches(datamodule, 1)
    same = all(
        (a["candidates"] == b["candidates"]).all() for a, b in zip(first, again, strict=True)
    )
    assert same
    a = np.sort(np.concatenate([b["candidates"].numpy() for b in first]).ravel())
    c = np.sort(np.concatenate([b["candidates"].numpy() for b in second]).ravel())
    assert not np.array_equal(a, c)


def test_short_impressions_sample_with_replacement(tiny_data):
    train = tiny_data.splits["train"]
    counts = np.diff(train.candidate_offsets)
    rows = np.flatnonzero(counts <= 3)  # at most 2 non-clicks next to a click
    assert len(rows), "the tiny world should have short impressions"
    samples = TrainSamples(train, rows, npratio=4, history_len=50, seed=0)
    assert samples.short == len(samples)
    from newsrec.data.datamodule import _Batch

    batch = samples.__getitems__(_Batch(np.arange(len(samples)), 0, 0))
    assert batch["candidates"].shape == (len(samples), 5)


def test_training_batch_shapes_and_masks(datamodule):
    batch = batches(datamodule)[0]
    split = datamodule.data.splits["train"]
    samples = datamodule.train_samples()
    assert batch["history"].shape == (16, 50)
    assert batch["candidates"].shape == (16, 5)
    assert batch["user"].shape == batch["target"].shape == (16,)
    order = np.random.default_rng((datamodule.seed, 0)).permutation(len(samples))[:16]
    for row, sample in enumerate(order):
        imp = samples.impression[sample]
        hist = split.history[split.history_offsets[imp] : split.history_offsets[imp + 1]]
        mask = batch["history_mask"][row].numpy()
        assert mask.sum() == len(hist)
        assert mask[50 - len(hist) :].all()  # left padding: the most recent click is last
        assert batch["history"][row].numpy()[mask].tolist() == hist.tolist()
        assert (batch["history"][row].numpy()[~mask] == 0).all()


def test_evaluation_batches_cover_every_impression_once(datamodule):
    split = datamodule.data.splits["dev"]
    seen, widths = [], []
    for batch in datamodule.test_dataloader():
        # histories are cut to the batch's longest, and batches come by history length
        widths.append(batch["history"].shape[1])
        assert widths[-1] == max(1, int(batch["history_mask"].sum(1).max()))
        mask = batch["candidate_mask"].numpy()
        assert (batch["labels"].numpy()[~mask] == -1).all()
        for row, impression in enumerate(batch["impression"].numpy()):
            i = int(np.flatnonzero(split.impression_id == impression)[0])
            s, e = split.candidate_offsets[i], split.candidate_offsets[i + 1]
            assert (
                batch["candidates"][row].numpy()[mask[row]].tolist()
                == split.candidates[s:e].tolist()
            )
            assert batch["labels"][row].numpy()[mask[row]].tolist() == split.labels[s:e].tolist()
            owner = int(batch["owner"][row])
            hist = split.history[split.history_offsets[i] : split.history_offsets[i + 1]]
            hmask = batch["history_mask"][owner].numpy()
            assert batch["history"][owner].numpy()[hmask].tolist() == hist.tolist()
            assert int(batch["user"][owner]) == int(split.user[i])
        seen.extend(batch["impression"].tolist())
    assert sorted(seen) == sorted(split.impression_id.tolist())
    assert widths == sorted(widths) and len(set(widths)) > 1


def test_training_shards_are_disjoint_per_rank():
    ranks = [list(TrainBatchSampler(1000, 16, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 1000 // 32
    seen = [np.concatenate([b.indices for b in batches]) for batches in ranks]
    assert not set(seen[0]) & set(seen[1])
    assert len(set(seen[0]) | set(seen[1])) == 2 * (1000 // 32) * 16


def test_evaluation_shards_are_disjoint_and_keep_history_groups_whole():
    sizes = np.random.default_rng(0).integers(1, 4, 50)
    sizes[20] = 37  # a crowd sharing one history (MIND's unseen users without clicks)
    key = np.repeat(np.arange(50), sizes)
    shards = [list(EvalBatchSampler(key, 10, rank=r, world_size=2)) for r in (0, 1)]
    batches = [p for shard in shards for p in shard]
    positions = np.concatenate(batches)
    assert sorted(positions.tolist()) == list(range(len(key)))
    crowd = [p for p in batches if 20 in key[p]]
    assert [len(p) for p in crowd] == [10, 10, 10, 7]  # cut to the batch size, and alone
    assert all(set(key[p]) == {20} for p in crowd)
    groups = [set(key[p]) for p in batches if 20 not in key[p]]
    for a in range(len(groups)):  # the other groups are never cut
        for b in range(a + 1, len(groups)):
            assert not groups[a] & groups[b]


def test_a_new_data_source_is_one_subclass(tiny_paths, data_dir, tmp_path):
    """The DataSource contract: anything that returns MIND folders from prepare() feeds the
    datamodule, which never looks at where they came from."""
    from newsrec.data.info import SplitPaths
    from newsrec.data.source import DataSource

    class Folders(DataSource):  # e.g. MIND-format files exported by another system
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def prepare(self, root, progress=True) -> SplitPaths:
            self.calls.append((root, progress))
            return SplitPaths(train=tiny_paths.train, dev=tiny_paths.dev)

    source = Folders()
    dm = MindDataModule(source, data_dir=str(tmp_path), batch_size=16)
    dm.setup("fit")
    assert source.calls == [(tmp_path, True)]
    assert set(dm.data.splits) == {"train", "dev"}  # no test split given, none read
    assert len(dm.data.splits["dev"]) == len(read_lines(tiny_paths.dev / "behaviors.tsv"))
    assert not dm.has_truth and dm.data.splits["dev"].truth is None
    with pytest.raises(TypeError, match="prepare"):
        type("NoPrepare", (DataSource,), {})()  # the contract's one method is required


def read_lines(path):
    return path.read_text(encoding="utf-8").splitlines()
