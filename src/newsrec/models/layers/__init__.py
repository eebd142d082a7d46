"""Building blocks shared by every model: embeddings, attention, CNNs, GRU, MLP (as timm's
`layers/`). Encoders in `news_encoders.py` / `user_encoders.py` are thin compositions of them.

Every layer that reads a sequence takes a boolean `mask` (True = real item) and guarantees:
padded positions never take part (zero attention weight, excluded from pooling, zeroed before
convolutions), and an all-padding sequence gives a finite output (zeros unless documented).
Shapes: B = batch (or news rows), L = sequence length (words or history slots), D = features.

Each `forward` is the paper's padded computation, with its equation numbers. What the engine
(`newsrec.models.engine`) asks of a layer it asks through methods the layer defines for it:
`packed` (the same outputs from the real items only) and `set_fast` (a faster kernel for the
same function, `FastPath`).
"""

from newsrec.models.layers.attention import (
    AdditiveAttention,
    CandidateAwareAttention,
    MeanPooling,
    MultiHeadSelfAttention,
    PersonalizedAttention,
    pooling_layer,
)
from newsrec.models.layers.basic import (
    MLP,
    Dropout,
    FastPath,
    WordEmbedding,
    masked_mean,
    masked_softmax,
)
from newsrec.models.layers.convolution import KnowledgeAwareCNN, WordCNN
from newsrec.models.layers.recurrent import MaskedGRU

__all__ = [
    "MLP",
    "AdditiveAttention",
    "CandidateAwareAttention",
    "Dropout",
    "FastPath",
    "KnowledgeAwareCNN",
    "MaskedGRU",
    "MeanPooling",
    "MultiHeadSelfAttention",
    "PersonalizedAttention",
    "WordCNN",
    "WordEmbedding",
    "masked_mean",
    "masked_softmax",
    "pooling_layer",
]
