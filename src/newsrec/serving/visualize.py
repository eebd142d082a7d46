"""Pictures of what a trained model attends to: word attention over news titles.

    python -m newsrec.serving.visualize CHECKPOINT [--data synthetic] [--news 8] [--out attention.png]

For models whose news encoder pools words with additive attention (NRMS and its ablations,
nrms_cnn, LSTUR's title encoder), each row of the picture is one news title of the test
split, each word shaded by the weight the model gives it (NRMS eq. 4).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from newsrec.models.base import NewsEncoder


def word_attention(news_encoder: NewsEncoder, title: torch.Tensor) -> torch.Tensor:
    """Word-attention weights [n, L] of a news encoder for titles [n, L] (NRMS eq. 4); a
    ValueError for encoders without word attention (`NewsEncoder.word_attention`)."""
    return news_encoder.word_attention(title)


def plot_word_attention(words: list[list[str]], weights: list[np.ndarray], out: Path) -> Path:
    """One row per title, words shaded by their attention weight; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    width = max(len(" ".join(w)) for w in words)
    fig = Figure(figsize=(max(6.0, 0.11 * width + 1), 0.45 * len(words) + 0.8))
    ax = fig.subplots()
    ax.set_xlim(0, width + 2)
    ax.set_ylim(len(words), -0.5)
    ax.axis("off")
    ax.set_title("word attention (darker = more weight)", fontsize=10)
    for row, (title, weight) in enumerate(zip(words, weights, strict=True)):
        x = 0.0
        top = float(weight.max()) if len(weight) else 1.0
        for word, w in zip(title, weight, strict=True):
            ax.text(
                x,
                row,
                word,
                fontsize=9,
                family="monospace",
                va="center",
                bbox={"facecolor": (0.8, 0.1, 0.1, float(w) / top * 0.8), "pad": 1.5, "lw": 0},
            )
            x += len(word) + 1
    out = Path(out)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="synthetic", help="data config the model was trained on")
    parser.add_argument("--news", type=int, default=8, help="titles to show")
    parser.add_argument("--out", default="attention.png")
    parser.add_argument("--data-dir", default=None, help="where the data lives (default: data/)")
    args = parser.parse_args(argv)

    from newsrec.build import checkpoint_datamodule
    from newsrec.checkpoints import CheckpointError, load_module, read_checkpoint
    from newsrec.config import compose_for_checkpoint

    try:  # a bad file: its message, no traceback
        checkpoint = read_checkpoint(args.checkpoint, key="checkpoint")
        module = load_module(args.checkpoint, checkpoint=checkpoint).eval()
    except CheckpointError as err:
        raise SystemExit(f"error: {err}") from None
    cfg = compose_for_checkpoint(args.checkpoint, args.data, args.data_dir)
    datamodule = checkpoint_datamodule(cfg, Path(args.checkpoint), checkpoint)
    datamodule.setup("test")
    table = datamodule.news_table()
    split = datamodule.data.splits[datamodule.test_split]
    rows = torch.as_tensor(np.unique(np.asarray(split.candidates))[1 : args.news + 1])
    title = table["title"][rows]
    with torch.no_grad():
        weights = word_attention(module.recommender.news_encoder, title)
    vocab = datamodule.data.vocab.words
    words, shown = [], []
    for t, w in zip(title, weights, strict=True):
        n = int((t != 0).sum())
        words.append([vocab[i] for i in t[:n].tolist()])
        shown.append(w[:n].numpy())
    print(f"written to {plot_word_attention(words, shown, Path(args.out))}")


if __name__ == "__main__":
    main()
