"""A recommender from its config: the three parts of conf/model/<name>.yaml (`_partial_`,
built here with the data's sizes), the engine, and the reference code's initial weights."""

from __future__ import annotations

import hydra

from newsrec.data.info import DataInfo
from newsrec.models.engine.fast import FastEngine
from newsrec.models.init import init_weights
from newsrec.models.recommender import Recommender

ENGINES = ("fast", "plain")


def build_recommender(
    news_encoder: dict,
    user_encoder: dict,
    click_predictor: dict,
    data: DataInfo,
    engine: str = "fast",
) -> Recommender:
    """The parts for `data`, composed with `engine` ("fast" or "plain", models/engine), with
    the initial weights of the reference code (models/init.py)."""
    if engine not in ENGINES:
        raise ValueError(f"model.engine={engine!r}: choose one of {', '.join(ENGINES)}")
    news = hydra.utils.instantiate(news_encoder)(data=data)
    user = hydra.utils.instantiate(user_encoder)(data=data, news_dim=news.output_dim)
    predictor = hydra.utils.instantiate(click_predictor)(dim=news.output_dim)
    fast = FastEngine() if engine == "fast" else None
    model = init_weights(Recommender(news, user, predictor, engine=fast))
    if fast is not None:
        fast.attach(model)
    return model
