"""The start-up check: a model whose news encoder reads a feature the data lacks is refused.

Each news encoder declares the news-table keys it reads (`NewsEncoder.features`); each
preprocessed dataset says which it has (`Preprocessed.features`: EB-NeRD has no title
entities, MIND no document vectors, ...). Without this check such a run would train on
padding (an all-zero feature) or fail deep inside a batch; with it, it stops before training
with a message that names the model, the data, the missing feature and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable

from newsrec.data.info import DERIVED_FEATURES
from newsrec.data.mind import DataError

# What to do when a feature is missing, by feature.
_REMEDY = {
    "document_vector": (
        "give the data document vectors (EB-NeRD: data.source.document_vectors="
        "Ekstra_Bladet_contrastive_vector, or a parquet of article_id and vector), or pick a "
        "model that reads titles (model=nrms)"
    ),
    "title_entities": "pick a model without entities (model=nrms, lstur, naml, npa)",
}


class MissingFeatureError(DataError):
    """A model needs a news feature the dataset does not have."""


def check_features(needed: Iterable[str], available: Iterable[str], model: str, data: str) -> None:
    """Raise MissingFeatureError unless every `needed` feature is `available` (or derived).

    `needed`: the news encoder's `features`; `available`: the data's `features`; `model`
    and `data` name them in the message.
    """
    have = set(available) | set(DERIVED_FEATURES)
    missing = [name for name in needed if name not in have]
    if not missing:
        return
    remedies = "; ".join(dict.fromkeys(_REMEDY.get(name, "pick another model") for name in missing))
    raise MissingFeatureError(
        f"model {model} reads the news feature(s) {', '.join(missing)}, which the data "
        f"{data} does not have (it has: {', '.join(sorted(set(available)))}). "
        f"To fix: {remedies}."
    )


def check_model_data(needed: Iterable[str], datamodule, model: str) -> None:
    """`check_features` of a model's news-encoder features against a set-up datamodule's
    (where runs start: newsrec.train.setup, newsrec.evaluate.evaluate)."""
    check_features(needed, datamodule.features, model, repr(datamodule.source))
