"""Pretrained language model (PLM) news encoder: PLM-NR (Wu et al., SIGIR 2021).

    token ids of the title (the PLM's own tokenizer; newsrec.data.plm_tokens)
      -> embeddings + the PLM's transformer layers: the bottom ones frozen, the top
         `train_layers` fine-tuned
      -> pooling over the token states: additive attention (PLM-NR) or the first token
      -> a dense projection to the width the user encoder works in (NRMS: 256)

Speed. The frozen bottom of the PLM is a fixed function of the news text, so its output is
computed once per news and kept (`FrozenStateCache`, on the device of the news table): a
training step then runs only the trainable top layers, on the batch's distinct news (the
Recommender de-duplicates them). With `train_layers=0` every news is reduced to cached final
token states and a step costs only pooling, projection and the user encoder. The frozen
layers always run in eval mode (no dropout), so the cached path is the same function as the
uncached one (engine=plain computes them at every step; tested equal). The cache is the
encoder's fast path (`FastPath`), switched on by the engine.

Interface: the news-encoder contract (`newsrec.models.base.NewsEncoder`). It reads the news
table's `plm_title`, `plm_title_mask` and `row` (the row index, which keys the cache).
Architectures whose layers take `(hidden_states, attention_mask)` are supported: BERT,
RoBERTa, MiniLM, ELECTRA, XLM-R (`encoder.layer`) and DistilBERT (`transformer.layer`).
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from newsrec.data.info import DataInfo, NewsInputs
from newsrec.models.base import NewsEncoder
from newsrec.models.layers import AdditiveAttention, Dropout, FastPath

log = logging.getLogger(__name__)
LAYER_LISTS = ("encoder.layer", "transformer.layer", "layers")
# The frozen layers are in eval mode on purpose (see PLMNewsEncoder.train).
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")


def load_plm(pretrained: str) -> nn.Module:
    """`transformers.AutoModel` for a hub name or a local Hugging Face folder."""
    try:
        from transformers import AutoModel
    except ImportError as err:
        raise ImportError("PLM news encoders need transformers: pip install -e '.[plm]'") from err
    try:
        # sdpa: PyTorch's fused attention, on CPU and GPU alike.
        return AutoModel.from_pretrained(pretrained, attn_implementation="sdpa")
    except OSError as err:
        raise OSError(
            f"model.news_encoder.pretrained={pretrained}: no model there. Give a local Hugging "
            "Face folder (config.json + weights; README: 'PLM news encoders') or a hub name "
            "while online (HF_HUB_OFFLINE unset)."
        ) from err


def transformer_layers(plm: nn.Module) -> nn.ModuleList:
    for path in LAYER_LISTS:
        module = plm
        for name in path.split("."):
            module = getattr(module, name, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(
        f"{type(plm).__name__}: no transformer layer list at {' / '.join(LAYER_LISTS)}; "
        "use a BERT-, RoBERTa- or DistilBERT-like encoder"
    )


class FrozenStateCache:
    """Token states [num_news, L, H] after the frozen layers, filled the first time a news is
    seen. A plain attribute, not a buffer: it is neither saved in checkpoints nor broadcast
    by DDP (each rank fills its own, with the same values)."""

    def __init__(self, num_news: int, dtype: torch.dtype) -> None:
        self.num_news, self.dtype = num_news, dtype
        self.width = 1  # tokens kept per news: the table's longest text (set_news_table)
        self.states: Tensor | None = None
        self.filled: Tensor | None = None

    def clear(self, num_news: int | None = None, width: int | None = None) -> None:
        self.num_news, self.width = num_news or self.num_news, width or self.width
        self.states = self.filled = None

    def get(self, rows: Tensor, ids: Tensor, mask: Tensor, compute) -> Tensor:
        """States [n, l, H] of news `rows` with token `ids`/`mask` [n, L]; `compute(ids, mask)`
        runs the frozen layers on the rows not cached yet and returns the l <= L positions
        worth keeping (all of them, or the first token only)."""
        if self.filled is None:
            self.filled = torch.zeros(self.num_news, dtype=torch.bool, device=rows.device)
        missing = ~self.filled[rows]
        if missing.any():
            if int(missing.sum()) >= 1000:  # evaluation's first pass: minutes on a CPU
                log.info("PLM: frozen layers of %s news, computed once", f"{int(missing.sum()):,}")
            states = compute(ids[missing], mask[missing])  # [m, l, H]
            width = states.shape[1]
            if self.states is None:
                shape = (self.num_news, max(width, self.width), states.shape[-1])
                self.states = states.new_zeros(shape, dtype=self.dtype)
            if width > self.states.shape[1]:  # a longer text than any before: widen
                grown = self.states.new_zeros(self.num_news, width, self.states.shape[-1])
                grown[:, : self.states.shape[1]] = self.states
                self.states = grown
            self.states[rows[missing], :width] = states.to(self.dtype)
            self.filled[rows[missing]] = True
        # Positions past a news' own length hold whatever was there: they are masked.
        length = min(ids.shape[1], self.states.shape[1])
        return self.states[rows, :length].float()  # computed on in float32 (or autocast)


class PLMNewsEncoder(NewsEncoder, FastPath):
    """PLM-NR news encoder; see the module docstring."""

    needs_user = False

    def __init__(
        self,
        data: DataInfo,
        pretrained: str,
        train_layers: int = 2,  # PLM-NR fine-tunes the top layers; 0 = frozen PLM
        pooling: str = "additive",  # PLM-NR: attention pooling ('additive'); or 'first' ([CLS])
        query_dim: int = 200,  # additive attention query, as NRMS
        dim: int = 256,  # news vector width: NRMS's 16 heads x 16
        dropout: float = 0.2,  # on the pooled vector, as NRMS's 20%
        max_len: int = 30,  # tokens per news, special tokens included (preprocessing's)
        fields: tuple[str, ...] = ("title",),  # the text tokenised: title [+ abstract]
        topic_dim: int = 0,  # > 0: concatenate category and subcategory embeddings (LSTUR)
        cache_dtype: str = "float32",  # 'bfloat16' halves the cache's memory (GPU)
        gradient_checkpointing: bool = False,  # recompute the trainable layers in backward
    ) -> None:
        super().__init__()
        self.plm = load_plm(pretrained)
        self.layers = transformer_layers(self.plm)
        n = len(self.layers)
        if not 0 <= train_layers <= n:
            raise ValueError(
                f"model.news_encoder.train_layers={train_layers}: {pretrained} has {n} layers; "
                f"choose 0 (frozen) to {n} (all fine-tuned)"
            )
        if pooling not in ("additive", "first"):
            raise ValueError(f"unknown PLM pooling {pooling!r}; expected 'additive' or 'first'")
        self.num_frozen = n - train_layers
        # Everything below the trainable layers is frozen, embeddings included; when every
        # layer is trained, so are the embeddings (full fine-tuning). The PLM's own pooler is
        # never used.
        self.frozen = (
            [] if train_layers == n else [self.plm.embeddings, *self.layers[: n - train_layers]]
        )
        for module in self.frozen:
            module.requires_grad_(False)
        if getattr(self.plm, "pooler", None) is not None:
            self.plm.pooler.requires_grad_(False)
        hidden = self.plm.config.hidden_size
        self.pooling = pooling
        self.attention = AdditiveAttention(hidden, query_dim) if pooling == "additive" else None
        self.dropout = Dropout(dropout)  # the engine gives it the cheap CPU mask
        self.projection = nn.Linear(hidden, dim)
        self.cache = FrozenStateCache(data.num_news, getattr(torch, cache_dtype))
        self.first_token_only = pooling == "first" and train_layers == 0
        self.gradient_checkpointing = gradient_checkpointing
        self.max_len = max_len
        self.features = self.declare(pretrained, max_len, fields, topic_dim).features
        self.topic = self.subtopic = None
        if topic_dim > 0:
            self.topic = nn.Embedding(data.num_categories, topic_dim)
            self.subtopic = nn.Embedding(data.num_subcategories, topic_dim)
        self.output_dim = dim + 2 * topic_dim

    @classmethod
    def declare(
        cls,
        pretrained: str,
        max_len: int = 30,
        fields: tuple[str, ...] = ("title",),
        topic_dim: int = 0,
        **settings,
    ) -> NewsInputs:
        """The PLM's own tokens of `fields` (preprocessing tokenises them with the PLM's
        tokenizer), the row index that keys the frozen-state cache, and the topics."""
        if not fields or set(fields) - {"title", "abstract"}:
            raise ValueError(f"PLM fields must be title and/or abstract, got {list(fields)}")
        topics = ("category", "subcategory") if topic_dim > 0 else ()
        return NewsInputs(
            features=("plm_title", "plm_title_mask", "row", *topics),
            tokenizer=str(pretrained),
            max_len=max_len,
            token_fields=tuple(fields),
        )

    @property
    def caches_frozen(self) -> bool:
        """The frozen layers' output kept per news: the fast path, when there are frozen layers."""
        return self.fast and bool(self.frozen)

    def train(self, mode: bool = True) -> PLMNewsEncoder:
        super().train(mode)
        for module in self.frozen:  # no dropout where nothing learns: cached == uncached
            module.eval()
        return self

    def set_news_table(self, table: dict[str, Tensor]) -> None:
        """A new news table (another split, a loaded checkpoint): cached states are stale."""
        if table["plm_title"].shape[1] != self.max_len:
            raise ValueError(
                f"the news table holds {table['plm_title'].shape[1]} PLM tokens per news, this "
                f"encoder was built for max_len={self.max_len}: preprocess with the same max_len"
            )
        used = table["plm_title_mask"].bool().any(0).nonzero()  # columns some news uses
        width = 1 if self.first_token_only or not len(used) else int(used.max()) + 1
        self.cache.clear(len(table["row"]), width)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.cache.clear()  # new weights: the cached states were computed with the old ones
        super()._load_from_state_dict(*args, **kwargs)

    def _mask(self, h: Tensor, mask: Tensor) -> Tensor | None:
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(
            config=self.plm.config, inputs_embeds=h, attention_mask=mask
        )

    def _run(self, layers, h: Tensor, mask: Tensor) -> Tensor:
        attention_mask = self._mask(h, mask)
        for layer in layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(layer, h, attention_mask, use_reentrant=False)
            else:
                h = layer(h, attention_mask)
            h = h[0] if isinstance(h, tuple) else h  # transformers 4 layers return tuples
        return h

    def frozen_states(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Embeddings + frozen layers: ids, mask [n, L] -> token states [n, L, H]."""
        with torch.no_grad():
            h = self.plm.embeddings(input_ids=ids)
            return self._run(self.layers[: self.num_frozen], h, mask)

    def token_states(self, news: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The last layer's token states [n, L, H] and the token mask [n, L]."""
        ids, mask = news["plm_title"], news["plm_title_mask"].bool()  # [n, max_len]
        used = mask.any(0).nonzero()
        length = int(used.max()) + 1 if len(used) else 1
        ids, mask = ids[:, :length], mask[:, :length].clone()
        # The padding news (row 0) has no token: let it attend to its first position, so it
        # gets a finite vector (masked out downstream) instead of a softmax over nothing.
        mask[:, 0] = True
        if self.caches_frozen and self.first_token_only:
            # Frozen PLM + [CLS] pooling: a news is one cached vector, not L token states.
            h = self.cache.get(news["row"], ids, mask, lambda i, m: self.frozen_states(i, m)[:, :1])
            return h, mask[:, :1]
        if self.caches_frozen:
            h = self.cache.get(news["row"], ids, mask, self.frozen_states)
        elif self.frozen:
            h = self.frozen_states(ids, mask)
        else:
            h = self.plm.embeddings(input_ids=ids)
        h = self._run(self.layers[self.num_frozen :], h, mask)  # the trainable top
        return h, mask

    def forward(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        h, mask = self.token_states(news)  # [n, L, H]
        # PLM-NR's attention pooling, or the first token ([CLS] / <s>): [n, H]
        r = self.attention(h, mask)[0] if self.attention is not None else h[:, 0]
        e = self.projection(self.dropout(r))  # [n, dim]
        if self.topic is None:
            return e
        return torch.cat([e, self.topic(news["category"]), self.subtopic(news["subcategory"])], -1)
