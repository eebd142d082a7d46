"""A news encoder that reads a pre-computed document vector instead of tokens.

The EB-NeRD toolkit's NRMSDocVec (ebrec, `models/newsrec/nrms_docvec.py`): NRMS whose news
encoder starts from an article embedding (the dataset's artifacts: a contrastive or a PLM
vector per article, computed from title, subtitle and body) and passes it through dense
layers, each ReLU -> batch normalisation -> dropout, then a ReLU projection to the user
encoder's width (heads x head_dim = 16 x 16 in its hparams_nrms_docvec).

Two choices differ from the toolkit, both documented in conf/model/news_encoder/docvec.yaml:
batch statistics skip all-zero vectors (the padding news, and articles without a vector:
the engine pads a batch's distinct news with row 0, which would otherwise pull the means to
zero), and the toolkit's L2 penalty of 1e-4 on the dense kernels has no counterpart (the one
LightningModule has one loss; conf/optimizer's weight decay is the knob).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from newsrec.data.info import DataInfo
from newsrec.models.base import NewsEncoder
from newsrec.models.layers import Dropout


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics come from the rows where `mask` is True only.

    x [n, D], mask [n]. In evaluation it is plain BatchNorm1d (running statistics); a batch
    without a real row leaves the running statistics as they are.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if not self.training or mask is None:
            return super().forward(x)
        real = x[mask]  # [m, D]
        if real.shape[0] < 2:  # no batch statistics from fewer than 2 rows
            return nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        mean, var = real.mean(0), real.var(0, unbiased=False)
        with torch.no_grad():
            m, unbiased = self.momentum, var * real.shape[0] / (real.shape[0] - 1)
            self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
            self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
            self.num_batches_tracked.add_(1)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class DocumentVectorNewsEncoder(NewsEncoder):
    """Document vector [n, document_dim] -> dense layers -> news vector [n, output_dim]."""

    features = ("document_vector",)

    def __init__(
        self,
        data: DataInfo,
        units: Sequence[int] = (512, 512, 512),  # ebrec: newsencoder_units_per_layer
        dim: int = 256,  # ebrec: head_num x head_dim = 16 x 16, the user encoder's width
        dropout: float = 0.2,  # ebrec: dropout 0.2
    ) -> None:
        super().__init__()
        # A dataset without document vectors (document_dim 0) still builds, so that the
        # start-up check (newsrec.data.features) can refuse it with a message.
        width = max(int(data.document_dim), 1)
        self.dense = nn.ModuleList()
        self.norms = nn.ModuleList()
        for size in units:
            self.dense.append(nn.Linear(width, size))
            self.norms.append(MaskedBatchNorm1d(size, eps=1e-3, momentum=0.01))  # Keras defaults
            width = size
        self.dropout = Dropout(dropout)
        self.projection = nn.Linear(width, dim)
        self.output_dim = dim

    def forward(self, news: dict[str, Tensor], user: Tensor | None = None) -> Tensor:
        x = news["document_vector"]  # [n, document_dim]
        real = x.abs().sum(-1) > 0  # [n]: padding news and articles without a vector are zero
        x = x.to(self.projection.weight.dtype) if not torch.is_autocast_enabled() else x
        for dense, norm in zip(self.dense, self.norms, strict=True):
            x = self.dropout(norm(torch.relu(dense(x)), real))  # [n, units]
        return torch.relu(self.projection(x))  # [n, dim]
