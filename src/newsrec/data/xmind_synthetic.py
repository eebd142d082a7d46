"""A synthetic xMIND: the synthetic MIND world plus translation files in xMIND's layout.

The "translation" maps every word of a title or abstract to a made-up word of the target
language, one fixed word for each source word, in the same order: what a news means (its
latent vector, through its modified topical words) survives, as a good translation keeps
it, and the click model, the clicks and the oracle are the world's own. `missing_share` of
the news get no translation (real xMIND translated all of MIND; the share exercises the
missing-translation count and the stop above `max_missing_share`).

    python -m newsrec.data.xmind_synthetic --preset synthetic_tiny --language swh --out DIR

writes DIR/MINDsmall_train/, DIR/MINDsmall_dev/ (the world's MIND files, the shape of
MIND-small unzipped) and DIR/xMIND/<language>/xMINDsmall_<split>/news.tsv, so that
`python train.py data=xmind_small data.language=swh data.source.mind_dir=DIR
data.source.xmind_dir=DIR/xMIND` runs on it offline; `data=synthetic_xmind` does all of it
inside a run.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path

from newsrec.data.info import SplitPaths
from newsrec.data.mind import TOKEN_PATTERN
from newsrec.data.source import DataSource
from newsrec.data.synthetic import SyntheticSource
from newsrec.data.synthetic.streams import pseudo_words, stream
from newsrec.data.xmind import XMindSource
from newsrec.utils.io import atomic_path


def _translator(language: str, seed: int):
    """A function: text -> the same words, each replaced by its made-up translation."""
    rng = stream(
        seed, "xmind-translation", int(hashlib.sha256(language.encode()).hexdigest()[:6], 16)
    )
    table: dict[str, str] = {}
    taken: set[str] = set()

    def word(match) -> str:
        source = match.group().lower()
        if source not in table:
            if not source.isalpha():
                table[source] = source  # punctuation and numbers stay
            else:
                table[source] = pseudo_words(rng, 1, taken)[0]  # adds it to `taken`
        return table[source]

    return lambda text: TOKEN_PATTERN.sub(word, text)


def write_translations(
    mind: dict[str, Path], out: Path, language: str, missing_share: float = 0.0, seed: int = 0
) -> dict[str, int]:
    """xMIND's news.tsv (nid, title, abstract) of each MIND split folder of `mind` into
    out/<language>/xMINDsmall_<split>/; returns the untranslated news per split."""
    translate = _translator(language, seed)
    missing = {}
    for split, folder in mind.items():
        rng = stream(seed, "xmind-translation", 1 + ["train", "dev", "test"].index(split))
        lines, skipped = [], 0
        for line in (folder / "news.tsv").read_text(encoding="utf-8").splitlines():
            cols = line.split("\t")
            if rng.random() < missing_share:
                skipped += 1
                continue
            lines.append(f"{cols[0]}\t{translate(cols[3])}\t{translate(cols[4])}\n")
        target = out / language / f"xMINDsmall_{split}" / "news.tsv"
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            tmp.write_text("".join(lines), encoding="utf-8")
        missing[split] = skipped
    return missing


class SyntheticXMindSource(DataSource):
    """data=synthetic_xmind: a synthetic MIND world (`preset`) with translations into
    `language`, joined as XMindSource joins real xMIND (same code, same checks)."""

    def __init__(
        self,
        language: str = "swh",
        preset: str = "synthetic",
        seed: int = 0,
        missing_share: float = 0.0,
        max_missing_share: float = 0.01,
    ) -> None:
        self.world = SyntheticSource(preset, seed)
        self.join = XMindSource(language, max_missing_share=max_missing_share)
        self.language, self.missing_share, self.seed = language, missing_share, int(seed)

    def prepare(self, root: str | Path, progress: bool = True) -> SplitPaths:
        paths = self.world.prepare(root, progress=progress)
        folder = self.world.path(root).with_name(
            f"{self.world.name}-xmind-{self.language}-{self.missing_share}"
        )
        self.join.xmind_dir = folder
        if not (folder / ".done").is_file():
            splits = {s: Path(getattr(paths, s)) for s in ("train", "dev", "test")}
            write_translations(splits, folder, self.language, self.missing_share, self.seed)
            (folder / ".done").write_text("")
        return self.join.join(root, paths, progress)

    def __repr__(self) -> str:
        return f"SyntheticXMindSource(language={self.language!r}, preset={self.world.preset!r})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A synthetic MIND-small + xMIND folder.")
    parser.add_argument("--preset", default="synthetic_tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--language", default="swh")
    parser.add_argument("--missing-share", type=float, default=0.0)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    world = SyntheticSource(args.preset, args.seed)
    paths = world.prepare(args.out / ".world")
    splits = {}
    for split in ("train", "dev"):
        target = args.out / f"MINDsmall_{split}"
        if not target.exists():
            shutil.copytree(getattr(paths, split), target)
        splits[split] = target
    missing = write_translations(
        splits, args.out / "xMIND", args.language, args.missing_share, args.seed
    )
    print(f"MIND-small-shaped folders and xMIND ({args.language}) in {args.out}; "
          f"untranslated news: {missing}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
