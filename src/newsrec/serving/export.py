"""Vectors out of a trained model: files for an ANN index or a serving system, and TensorBoard.

`python recommend.py ckpt_path=... export=true` writes, for the split it ranks, to
`<run folder>/vectors/`:

    news_vectors.npy   float32 [N, D]   every news the split reads (candidates and histories)
    news_ids.txt       N lines          the MIND news id of each row
    user_vectors.npy   float32 [I, D]   the user vector of each impression (its history)
    user_ids.tsv       I lines          impression id <TAB> MIND user id of each row

and the news vectors, labelled with id and category, to TensorBoard's embedding projector
(`tensorboard --logdir <run folder>/tensorboard`, PROJECTOR tab). NPA has no news vector
that is the same for every user and DKN no user vector that is the same for every candidate:
what is undefined is skipped with a message.

`TensorBoardPictures` (conf/callbacks/default.yaml) does the pictures of a training run: the
word attention of a few test titles (`newsrec.serving.visualize`) as an image at every
validation, and the test news vectors in the projector at the end.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from newsrec.data.datamodule import EvalBatchSampler
from newsrec.serving.ranking import Ranker, news_ids

log = logging.getLogger(__name__)


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _save_lines(path: Path, lines: list[str]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def add_projector(
    writer, vectors: np.ndarray, ids: list[str], categories: list[str], limit: int, step: int = 0
) -> int:
    """News vectors into TensorBoard's projector, labelled (news id, category); at most
    `limit` of them, a fixed sample (the projector's files are text). Returns how many."""
    if limit < len(ids):
        keep = np.sort(np.random.default_rng(0).permutation(len(ids))[:limit])
        vectors, ids, categories = (
            vectors[keep],
            [ids[i] for i in keep],
            [categories[i] for i in keep],
        )
    writer.add_embedding(
        torch.as_tensor(vectors, dtype=torch.float32),
        metadata=[[i, c] for i, c in zip(ids, categories, strict=True)],
        metadata_header=["news_id", "category"],
        tag="news_vectors",
        global_step=step,
    )
    return len(ids)


def export_vectors(
    out: Path,
    ranker: Ranker,
    dataset,
    datamodule,
    ids: np.ndarray,
    users: list[str],
    split: str,
    projector_news: int = 5000,
) -> dict:
    """Write the split's news and user vectors (see the module doc); returns what was written."""
    folder = Path(out) / "vectors"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict = {"folder": str(folder)}
    if ranker.news_vectors is None:
        log.warning("export: no news vectors (this model's news vector depends on the user)")
        return written
    rows = datamodule.eval_news(split).to(ranker.news_vectors.device)
    rows = rows[rows > 0]
    news = ranker.news_vectors[rows].float().cpu().numpy()
    news_names = ids[rows.cpu().numpy()].tolist()
    _save_npy(folder / "news_vectors.npy", news)
    _save_lines(folder / "news_ids.txt", news_names)
    written["news"] = len(news_names)

    vocab = datamodule.data.vocab.categories
    category = ranker.table["category"][rows].cpu().numpy()
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(Path(out) / "tensorboard")) as writer:
        shown = add_projector(
            writer, news, news_names, [vocab[c] for c in category], projector_news
        )
    written["projector_news"] = shown

    if ranker.recommender.candidate_aware:
        log.warning("export: no user vectors (this model's user vector depends on the candidate)")
        return written
    arrays = datamodule.data.splits[split]
    position = {int(i): p for p, i in enumerate(np.asarray(arrays.impression_id))}
    user_vectors = np.zeros((len(arrays), news.shape[1]), dtype=np.float32)
    device = ranker.news_vectors.device
    for positions in EvalBatchSampler(dataset.group_key, datamodule.eval_batch_size):
        batch = {n: t.to(device) for n, t in dataset.__getitems__(positions).items()}
        vectors = ranker.user_vectors(batch)[batch["owner"]]
        at = [position[int(i)] for i in batch["impression"].tolist()]
        user_vectors[at] = vectors.float().cpu().numpy()
    _save_npy(folder / "user_vectors.npy", user_vectors)
    lines = [f"{int(i)}\t{u}" for i, u in zip(arrays.impression_id, users, strict=True)]
    _save_lines(folder / "user_ids.tsv", lines)
    written["users"] = len(lines)
    return written


class TensorBoardPictures(pl.Callback):
    """Into the TensorBoard logger's run: the word attention of `titles` test titles at
    every validation of fitting (IMAGES tab, a step slider; models with additive word
    attention), and at the end of fitting up to `projector_news` test news vectors with
    their categories (PROJECTOR tab)."""

    def __init__(self, titles: int = 8, projector_news: int = 2000) -> None:
        self.titles, self.projector_news = titles, projector_news
        self._drawn_step: int | None = None
        self._no_attention = False  # said once, not at every validation
        self._rows: np.ndarray | None = None  # the test split's news rows

    @rank_zero_only
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._draw(trainer, pl_module, projector=False)

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer, pl_module, projector=True)

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, projector: bool) -> None:
        logger = next((x for x in trainer.loggers if isinstance(x, TensorBoardLogger)), None)
        datamodule = getattr(trainer, "datamodule", None)
        if logger is None or datamodule is None or datamodule.data is None:
            return
        training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                self._pictures(logger.experiment, trainer, pl_module, datamodule, projector)
        finally:
            pl_module.train(training)

    def _pictures(self, writer, trainer, pl_module, datamodule, projector: bool) -> None:
        recommender, table = pl_module.recommender, pl_module.table
        if self._rows is None:  # once: MIND-large's test split has 87M candidates
            candidates = np.asarray(datamodule.data.splits[datamodule.test_split].candidates)
            self._rows = np.setdiff1d(np.unique(candidates), [0])
        rows = self._rows
        step = trainer.global_step
        if self._drawn_step != step:  # the last validation drew this step already
            first = torch.as_tensor(rows[: self.titles], device=pl_module.device)
            self._attention(writer, recommender, table, first, datamodule, step)
            self._drawn_step = step
        if not projector or recommender.needs_user:
            return  # NPA: a news vector per user, none to place in one projector
        if len(rows) > self.projector_news:  # a fixed sample; only it is encoded
            rows = np.sort(np.random.default_rng(0).permutation(rows)[: self.projector_news])
        rows = torch.as_tensor(rows, device=pl_module.device)
        vectors = recommender.encode_news(table, rows).float().cpu().numpy()
        ids = np.asarray(news_ids(datamodule.paths), dtype=object)[rows.cpu().numpy()].tolist()
        vocab = datamodule.data.vocab.categories
        categories = [vocab[c] for c in table["category"][rows].cpu().tolist()]
        add_projector(writer, vectors, ids, categories, self.projector_news, step)

    def _attention(self, writer, recommender, table, rows, datamodule, step: int) -> None:
        from matplotlib.image import imread

        from newsrec.serving.visualize import plot_word_attention, word_attention

        title = table["title"][rows]
        try:
            weights = word_attention(recommender.news_encoder, title)
        except ValueError as err:  # no additive word attention (CNN+max, DKN, ...)
            if not self._no_attention:
                log.info("no word-attention picture: %s", err)
            self._no_attention = True
            return
        vocab = datamodule.data.vocab.words
        words, shown = [], []
        for t, w in zip(title.cpu(), weights.cpu(), strict=True):
            n = int((t != 0).sum())
            words.append([vocab[i] for i in t[:n].tolist()])
            shown.append(w[:n].float().numpy())
        with tempfile.TemporaryDirectory() as tmp:
            image = imread(plot_word_attention(words, shown, Path(tmp) / "attention.png"))
        writer.add_image("word_attention", image[..., :3], step, dataformats="HWC")
