"""Checkpoints are files a user hands over: they are checked as the MIND files are.

eval.py, recommend.py, the Python API (`newsrec.load`) and resuming (`python train.py
ckpt_path=...`) read checkpoints through here. A file that is missing, truncated, damaged or
not a PyTorch file, a PyTorch file that train.py did not write, one whose vocabulary does not
match its own model, and (when resuming) one of another model or vocabulary than the run
builds, each raise `CheckpointError` naming the file, what is wrong and what to do. The
command lines print it without a traceback, before any data is prepared.

What a checkpoint of train.py holds (Lightning's layout plus newsrec's entry):

    state_dict          the weights
    hyper_parameters    name, news_encoder, user_encoder, click_predictor, data (sizes),
                        optimizer, scheduler, engine: enough to rebuild the model
    newsrec             vocab (words, categories, subcategories, users, entities) and the
                        preprocessing settings, so ids mean what they meant in training
"""

from __future__ import annotations

from pathlib import Path

import torch

from newsrec.data.mind import DataError

PARTS = ("news_encoder", "user_encoder", "click_predictor", "data")
# Vocabulary list -> the size in hyper_parameters["data"] the model was built with.
SIZES = {
    "words": "vocab_size",
    "categories": "num_categories",
    "subcategories": "num_subcategories",
    "users": "num_users",
    "entities": "num_entities",
}
_WROTE = "a checkpoint that train.py wrote (<run folder>/checkpoints/*.ckpt)"


class CheckpointError(DataError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict:
    """The checkpoint at `path`, read on the CPU and checked (module doc).

    `key` names the setting the path came from, for the message of a missing file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{key}={path}: no such checkpoint file. To fix: give {_WROTE}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, OSError...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint: truncated, damaged or not a PyTorch file "
            f"({reason}). To fix: copy the file again, or give another checkpoint of the run "
            "(its checkpoints/ folder keeps the best one and last.ckpt)"
        ) from None
    _check_layout(path, checkpoint)
    _check_vocabulary(path, checkpoint)
    return checkpoint


def _check_layout(path: Path, checkpoint) -> None:
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path}: a PyTorch file but not a training checkpoint (no state_dict). "
            f"To fix: give {_WROTE}"
        )
    hparams = checkpoint.get("hyper_parameters") or {}
    missing = [p for p in PARTS if p not in hparams]
    if missing or "vocab" not in (checkpoint.get("newsrec") or {}):
        what = f"hyper_parameters without {', '.join(missing)}" if missing else "no vocabulary"
        raise CheckpointError(
            f"{path}: a Lightning checkpoint, but not one of newsrec ({what}). "
            f"To fix: give {_WROTE}"
        )


def _check_vocabulary(path: Path, checkpoint: dict) -> None:
    vocab, sizes = checkpoint["newsrec"]["vocab"], checkpoint["hyper_parameters"]["data"]
    for name, size in SIZES.items():
        if name in vocab and size in sizes and len(vocab[name]) != sizes[size]:
            raise CheckpointError(
                f"{path}: its vocabulary does not match its model: {len(vocab[name]):,} "
                f"{name} in the vocabulary, {sizes[size]:,} rows in the model ({size}); the "
                f"file was assembled from two runs or edited. To fix: give {_WROTE}"
            )


def load_module(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    key: str = "ckpt_path",
    checkpoint: dict | None = None,
):
    """The LightningModule of a checked checkpoint (`read_checkpoint`, unless `checkpoint`,
    its content, was read already), on `map_location`."""
    from newsrec.models.module import NewsRecModule

    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(path, key)
    try:
        return NewsRecModule.load_from_checkpoint(path, map_location=map_location)
    except Exception as err:
        name = checkpoint["hyper_parameters"].get("name", "?")
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: the model it describes ({name}) cannot take its weights ({reason}); it "
            "was written by another version of newsrec, or edited. To fix: evaluate it with "
            "the newsrec version that trained it, or give another checkpoint"
        ) from None


def check_resume(path: str | Path, checkpoint: dict, module, vocab: dict) -> None:
    """Resuming from `checkpoint` (read from `path`) into `module`, built on data with the
    vocabularies `vocab`: the weights must fit the model and the ids mean the same words."""
    theirs = checkpoint["newsrec"]["vocab"]
    for name in SIZES:
        if name in theirs and name in vocab and list(theirs[name]) != list(vocab[name]):
            raise CheckpointError(
                f"{path}: it was trained on another vocabulary than this run's data gives "
                f"({len(theirs[name]):,} {name} there, {len(vocab[name]):,} here, or the "
                "same number in another order). To fix: resume with the data settings of "
                "the run that wrote it (data=..., data.preprocess.*, embedding=...)"
            )
    saved = checkpoint["state_dict"]
    for key, tensor in module.state_dict().items():
        if key not in saved or tuple(saved[key].shape) != tuple(tensor.shape):
            found = "missing" if key not in saved else f"shape {tuple(saved[key].shape)}"
            raise CheckpointError(
                f"{path}: it holds another model than this run builds "
                f"({checkpoint['hyper_parameters'].get('name', '?')} there, {module.name} "
                f"here; {key}: {found} there, {tuple(tensor.shape)} here). To fix: resume "
                "with the model settings of the run that wrote it (its .hydra/overrides.yaml), "
                "or train afresh without ckpt_path"
            )
