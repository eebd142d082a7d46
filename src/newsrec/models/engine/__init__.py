"""The engine: the recommender's functions computed with less work, beside the plain ones.

The models (models/layers, news_encoders.py, user_encoders.py, recommender.py) are written as
the papers' padded computations. `engine=fast` (the default, conf/model/_module.yaml) hands
a `FastEngine` to the recommender at construction; `engine=plain` hands none. Each path here
is tested equal to the plain one:
- fast.py: `FastEngine`, each distinct news once per batch, text packed, histories grouped by
  length, the layers' device kernels switched on;
- cache.py: `EvaluationCache`, every news of an evaluation encoded once, every distinct
  history once;
- packing.py: sort by length, cut the padding, pack the real items (pure tensor code);
- kernels.py: cheaper dropout masks on the CPU and attention layouts by device (pure).
Nothing is imported here, so that layers can use packing and kernels without importing the
engine that drives them.
"""
