"""News encoders: news-table features of n news -> one vector per news.

Each is a `NewsEncoder` (models/base.py: the contract, and the capabilities each declares:
`features`, `needs_user`, `output_dim`, `word_attention`), with the paper's values as
defaults. Word id 0 is padding: every mask is derived from it, and an all-padding title
gives a finite vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from newsrec.data.info import DataInfo, NewsInputs
from newsrec.models.base import NewsEncoder
from newsrec.models.engine.packing import Packed, unsort
from newsrec.models.layers import (
    AdditiveAttention,
    Dropout,
    KnowledgeAwareCNN,
    MeanPooling,
    MultiHeadSelfAttention,
    PersonalizedAttention,
    WordCNN,
    WordEmbedding,
    masked_mean,
    pooling_layer,
)


def packed_words(embedding: WordEmbedding, words: Tensor) -> tuple[Packed, Tensor]:
    """Word ids [n, L] as their real words only: (Packed, embedded words [T, word_dim])."""
    packed = Packed(words != 0)
    return packed, embedding(words.reshape(-1)[packed.index])


class SelfAttentionNewsEncoder(NewsEncoder):
    """NRMS news encoder: word embedding -> word self-attention -> additive word attention.

    `self_attention=False` and `pooling='mean'` give the word-level ablations of the paper's
    Figure 3. Without self-attention the news vector is pooled word embeddings (word_dim wide).
    """

    def __init__(
        self,
        data: DataInfo,
        word_dim: int = 300,  # paper: 300-d GloVe
        dropout: float = 0.2,  # paper: 20% on word embeddings; official code: also after MHSA
        self_attention: bool = True,
        heads: int = 16,  # paper: 16 heads x 16 dims
        head_dim: int = 16,
        pooling: str = "additive",  # 'additive' (paper) or 'mean' (ablation)
        query_dim: int = 200,  # paper: additive attention query 200
        pack: bool = True,  # False: the plain padded computation (same result, slower)
    ) -> None:
        super().__init__()
        self.pack = pack
        self.embedding = WordEmbedding(data, word_dim, dropout)
        dim = word_dim
        self.self_attention = None
        if self_attention:
            self.self_attention = MultiHeadSelfAttention(word_dim, heads, head_dim)
            self.dropout = Dropout(dropout)
            dim = self.self_attention.output_dim
        self.pooling = pooling_layer(pooling, dim, query_dim)
        self.output_dim = dim

    def forward(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        return self.attend_words(news["title"])[0]

    def forward_packed(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        """`forward` on the real words only: titles sorted by length and packed, so the
        embedding, dropout and every projection see real words only, and self-attention
        pads groups of similar length. A third or less of the padded work."""
        title = news["title"]
        packed, order = Packed.sorted(title != 0, rows_per_group=256)
        x = self.embedding(title[order].reshape(-1)[packed.index])  # [T, word_dim]
        if self.self_attention is not None:
            x = self.dropout(self.self_attention.packed(x, packed))  # eq. 1-2: [T, h * hd]
        return unsort(self.pooling.packed(x, packed)[0], order)  # eq. 3-5: [n, output_dim]

    def attend_words(self, title: Tensor) -> tuple[Tensor, Tensor]:
        """Titles [n, L] -> news vectors [n, output_dim], word weights [n, L] (eq. 1-5)."""
        mask = title != 0
        x = self.embedding(title)  # [n, L, word_dim]
        if self.self_attention is not None:
            x = self.dropout(self.self_attention(x, mask))  # eq. 1-2: [n, L, h * hd]
        return self.pooling(x, mask)  # eq. 3-5: [n, output_dim], [n, L]

    def word_attention(self, title: Tensor) -> Tensor:
        return self.attend_words(title)[1]


class CNNNewsEncoder(NewsEncoder):
    """Title CNN + additive word attention (the title encoder of NAML and LSTUR).

    With `topic_dim > 0` the category ("topic") and subcategory embeddings are concatenated to
    the title vector, as LSTUR does: output_dim = filters + 2 * topic_dim (400 + 100 + 100).
    """

    def __init__(
        self,
        data: DataInfo,
        word_dim: int = 300,
        dropout: float = 0.2,  # recommenders: dropout 0.2 on embeddings and after the CNN
        filters: int = 400,  # NAML / LSTUR (recommenders): 400 filters, window 3
        window: int = 3,
        pooling: str = "additive",
        query_dim: int = 200,
        topic_dim: int = 0,  # LSTUR: 100-d topic and subtopic embeddings; 0 = title only
    ) -> None:
        super().__init__()
        self.embedding = WordEmbedding(data, word_dim, dropout)
        self.cnn = WordCNN(word_dim, filters, window, dropout)
        self.pooling = pooling_layer(pooling, filters, query_dim)
        self.topic = self.subtopic = None
        if topic_dim > 0:
            self.topic = nn.Embedding(data.num_categories, topic_dim)
            self.subtopic = nn.Embedding(data.num_subcategories, topic_dim)
        self.features = self.declare(topic_dim=topic_dim).features
        self.output_dim = filters + 2 * topic_dim

    @classmethod
    def declare(cls, topic_dim: int = 0, **settings) -> NewsInputs:
        topics = ("category", "subcategory") if topic_dim > 0 else ()
        return NewsInputs(features=("title", *topics))

    def forward(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        return self.with_topics(self.attend_words(news["title"])[0], news)  # [n, output_dim]

    def forward_packed(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        """`forward` on the real words only: the convolution's windows and the attention
        scores are computed at real words, none at padding."""
        packed, x = packed_words(self.embedding, news["title"])  # [T, word_dim]
        r = self.pooling.packed(self.cnn.packed(x, packed), packed)[0]  # [n, filters]
        return self.with_topics(r, news)

    def with_topics(self, r: Tensor, news: dict[str, Tensor]) -> Tensor:
        """LSTUR's e = [e_t; e_v; e_sv]: the title vector with its topic embeddings."""
        if self.topic is None:
            return r
        return torch.cat([r, self.topic(news["category"]), self.subtopic(news["subcategory"])], -1)

    def attend_words(self, title: Tensor) -> tuple[Tensor, Tensor]:
        """Titles [n, L] -> title vectors [n, filters], word weights [n, L]."""
        mask = title != 0
        x = self.cnn(self.embedding(title), mask)  # [n, L, filters]
        return self.pooling(x, mask)

    def word_attention(self, title: Tensor) -> Tensor:
        return self.attend_words(title)[1]


class PersonalizedNewsEncoder(NewsEncoder):
    """NPA news encoder: title CNN, then attention whose query comes from the user's ID.

    The news vector depends on the user, hence `needs_user`. NPA derives the word-level and
    the news-level query from one user embedding; here the news and user encoders are
    separate modules, so each has its own user-ID embedding (same size, same role).
    User row 0 (unseen in training) has a zero embedding, i.e. a fixed generic query.
    """

    needs_user = True
    reads_user = True

    def __init__(
        self,
        data: DataInfo,
        word_dim: int = 300,
        dropout: float = 0.2,  # NPA paper: 0.2
        filters: int = 400,  # NPA paper: 400 filters, window 3
        window: int = 3,
        user_dim: int = 100,  # recommenders: user embedding 100 (NPA paper: 50)
        query_dim: int = 200,  # NPA paper: preference query 200
    ) -> None:
        super().__init__()
        self.embedding = WordEmbedding(data, word_dim, dropout)
        self.cnn = WordCNN(word_dim, filters, window, dropout)
        self.user_embedding = nn.Embedding(data.num_users, user_dim, padding_idx=0)
        self.attention = PersonalizedAttention(filters, user_dim, query_dim)
        self.output_dim = filters

    def forward(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        title = news["title"]  # [n, L]
        mask = title != 0
        x = self.cnn(self.embedding(title), mask)  # [n, L, filters]
        return self.attention(x, mask, self.user_embedding(_user(user)))[0]  # [n, filters]

    def forward_packed(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        index = torch.arange(len(news["title"]), device=news["title"].device)
        return self.personalize(self.user_independent(news), index, _user(user))

    def user_independent(self, news: dict[str, Tensor]) -> tuple[Packed, Tensor]:
        """The title CNN over the real words, once per news: (Packed, states [T, filters])."""
        packed, x = packed_words(self.embedding, news["title"])
        return packed, self.cnn.packed(x, packed)

    def personalize(self, shared: tuple[Packed, Tensor], index: Tensor, user: Tensor) -> Tensor:
        """Each (news, user) pair's personalized attention over the news' CNN states."""
        packed, states = shared
        pairs, items = packed.take_rows(index)  # the pairs' words, as rows of their own
        key = self.attention.user_key(self.user_embedding(user))  # [P, filters]
        return self.attention.packed(states.index_select(0, items), pairs, key)


def _user(user: Tensor | None) -> Tensor:
    if user is None:
        raise ValueError("NPA's news encoder needs the user of every news row (needs_user)")
    return user


class MultiViewNewsEncoder(NewsEncoder):
    """NAML news encoder: each view gives a vector, view-level additive attention mixes them.

    Title and abstract: CNN + additive word attention each (word embeddings shared, CNNs
    separate); category and subcategory: 100-d embedding -> dense to `filters` with ReLU.
    An abstract or title that is all padding still gives a zero view vector, which simply
    takes part in the view attention (a news always has a category row, possibly 0).
    """

    VIEWS = ("title", "abstract", "category", "subcategory")

    def __init__(
        self,
        data: DataInfo,
        word_dim: int = 300,
        dropout: float = 0.2,
        filters: int = 400,  # NAML (recommenders): 400 filters, window 3
        window: int = 3,
        query_dim: int = 200,
        category_dim: int = 100,  # recommenders: category and subcategory embeddings 100-d
        views: Sequence[str] = VIEWS,
    ) -> None:
        super().__init__()
        unknown = set(views) - set(self.VIEWS)
        if unknown or not views:
            raise ValueError(f"NAML views must be a non-empty subset of {self.VIEWS}: {views}")
        self.views = tuple(views)
        self.features = self.declare(views=views).features
        self.embedding = WordEmbedding(data, word_dim, dropout)
        self.text = nn.ModuleDict()
        self.text_pooling = nn.ModuleDict()
        self.category = nn.ModuleDict()
        self.category_dense = nn.ModuleDict()
        sizes = {"category": data.num_categories, "subcategory": data.num_subcategories}
        for view in self.views:
            if view in ("title", "abstract"):
                self.text[view] = WordCNN(word_dim, filters, window, dropout)
                self.text_pooling[view] = AdditiveAttention(filters, query_dim)
            else:
                self.category[view] = nn.Embedding(sizes[view], category_dim)
                self.category_dense[view] = nn.Sequential(
                    nn.Linear(category_dim, filters), nn.ReLU()
                )
        self.view_attention = AdditiveAttention(filters, query_dim)
        self.output_dim = filters

    @classmethod
    def declare(cls, views: Sequence[str] = VIEWS, **settings) -> NewsInputs:
        return NewsInputs(features=tuple(views))

    def forward(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        return self.mix([self.view_vector(view, news[view], False) for view in self.views])

    def forward_packed(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        """`forward` with each text view on its real words only (abstracts: ~50 slots)."""
        return self.mix([self.view_vector(view, news[view], True) for view in self.views])

    def view_vector(self, view: str, features: Tensor, packed: bool) -> Tensor:
        """One view's vector [n, filters]: CNN + attention over a text, or a dense category."""
        if view not in self.text:
            return self.category_dense[view](self.category[view](features))
        if packed:
            words, x = packed_words(self.embedding, features)
            return self.text_pooling[view].packed(self.text[view].packed(x, words), words)[0]
        mask = features != 0  # [n, L]
        x = self.text[view](self.embedding(features), mask)  # [n, L, filters]
        return self.text_pooling[view](x, mask)[0]

    def mix(self, vectors: list[Tensor]) -> Tensor:
        """View-level additive attention over the view vectors -> [n, filters]."""
        v = torch.stack(vectors, dim=1)  # [n, views, filters]
        all_views = torch.ones(v.shape[:2], dtype=torch.bool, device=v.device)
        return self.view_attention(v, all_views)[0]


class KnowledgeAwareNewsEncoder(NewsEncoder):
    """DKN news encoder: KCNN over title words aligned with their entities.

    Entity vectors are initialised from `data.entity_embeddings` (MIND's 100-d TransE) when
    given and fine-tuned like the words; entity id 0 means "no entity" and contributes a zero
    channel. Word width defaults to 300 (the GloVe vectors every model here shares; the DKN
    paper used 100-d words).
    """

    features = ("title", "title_entities")

    def __init__(
        self,
        data: DataInfo,
        word_dim: int = 300,
        dropout: float = 0.2,
        filters: int = 100,  # DKN paper: 100 filters per window size
        windows: Sequence[int] = (1, 2, 3),  # DKN paper: windows 1, 2, 3
    ) -> None:
        super().__init__()
        self.embedding = WordEmbedding(data, word_dim, dropout)
        self.entity_embedding = nn.Embedding(data.num_entities, data.entity_dim, padding_idx=0)
        if data.entity_embeddings is not None:
            if tuple(data.entity_embeddings.shape) != (data.num_entities, data.entity_dim):
                raise ValueError(
                    f"entity embeddings have shape {tuple(data.entity_embeddings.shape)}, "
                    f"expected ({data.num_entities}, {data.entity_dim}) from DataInfo"
                )
            with torch.no_grad():
                self.entity_embedding.weight.copy_(data.entity_embeddings)
                self.entity_embedding.weight[0].zero_()
        self.kcnn = KnowledgeAwareCNN(word_dim, data.entity_dim, filters, windows)
        self.output_dim = self.kcnn.output_dim

    def forward(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        title, entities = news["title"], news["title_entities"]  # [n, L] each
        words = self.embedding(title)  # [n, L, word_dim]
        return self.kcnn(words, self.entity_embedding(entities), title != 0, entities != 0)

    def forward_packed(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        packed, words = packed_words(self.embedding, news["title"])  # [T, word_dim]
        entities = news["title_entities"].reshape(-1)[packed.index]  # each word's entity
        return self.kcnn.packed(words, self.entity_embedding(entities), entities != 0, packed)


class BagOfWordsNewsEncoder(NewsEncoder):
    """News vector for the GRU baseline (Okura et al., 2017): mean word embedding -> dense, tanh.

    Okura et al. embed an article with a denoising autoencoder over its bag of words, i.e. an
    order-free text encoder followed by one non-linear layer; a mean of word embeddings
    through a dense tanh layer is the trainable, end-to-end counterpart of that encoder.
    """

    def __init__(
        self, data: DataInfo, word_dim: int = 300, dropout: float = 0.2, dim: int = 400
    ) -> None:
        super().__init__()
        self.embedding = WordEmbedding(data, word_dim, dropout)
        self.dense = nn.Linear(word_dim, dim)
        self.output_dim = dim

    def forward(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        title = news["title"]  # [n, L]
        x = masked_mean(self.embedding(title), title != 0)  # [n, word_dim]
        return torch.tanh(self.dense(x))  # [n, dim]

    def forward_packed(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        packed, x = packed_words(self.embedding, news["title"])  # [T, word_dim]
        mean = packed.pool(x, MeanPooling.weights(packed.mask, x.dtype))  # [n, word_dim]
        return torch.tanh(self.dense(mean))
