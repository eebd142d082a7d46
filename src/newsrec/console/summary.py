"""The table printed when training starts (conf/callbacks: `model_summary`).

Lightning's Rich summary, cut to what a newsrec user reads: the recommender's parts and
their parameters, then the counts with and without the word and entity embeddings (the
count the papers quote: NRMS's 530K is without its word embedding). Its FLOPs column (0:
Lightning counts FLOPs only for a model with an example input) and train/eval mode counts are
left out, and so is its bf16 warning: mixed precision keeps the weights in float32, so the
32-bit size estimate it falls back to is the right one.
"""

from __future__ import annotations

import warnings

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichModelSummary

from newsrec.models.summary import count_parameters


class ModelSummary(RichModelSummary):
    """The recommender's parts (to `max_depth`) and its parameter counts."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._max_depth or not trainer.is_global_zero:
            return
        from rich import get_console
        from rich.table import Table

        summary = self._summary(trainer, pl_module)
        columns = dict(summary._get_summary_data())
        table = Table(header_style="bold magenta")
        for name, justify in (("Name", "left"), ("Type", "left"), ("Params", "right")):
            table.add_column(name, justify=justify, no_wrap=name == "Name")
        for name, kind, params in zip(
            columns["Name"], columns["Type"], columns["Params"], strict=True
        ):
            if name.startswith("recommender"):  # not the metric states (no parameters)
                table.add_row(name, kind, params)
        get_console().print(table)
        recommender = getattr(pl_module, "recommender", pl_module)
        total = sum(p.numel() for p in recommender.parameters())
        trained = count_parameters(recommender, embeddings=True)
        line = f"parameters: {total:,} ({summary.model_size:.1f} MB)"
        if trained != total:  # a frozen PLM
            line += f", {trained:,} of them trained"
        without = count_parameters(recommender)
        print(f"{line}; {without:,} outside the embedding tables (the papers' count)", flush=True)

    def _summary(self, trainer: pl.Trainer, pl_module: pl.LightningModule):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Precision .* not supported by the model")
            return super()._summary(trainer, pl_module)
