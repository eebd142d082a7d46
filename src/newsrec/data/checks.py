"""Checks of what preprocessing reads and writes, beyond one file's format (`newsrec.data.mind`).

- `check_news_coverage`: a split whose behaviors.tsv names news that no news.tsv has. MIND's
  news.tsv of a split lists every news its impressions name; a missing news is dropped from
  histories and scored as an empty news among candidates, which a few can live with, but a
  large share means a damaged or wrong news.tsv (a 0-byte train news.tsv would otherwise
  train every train-only news as an empty title). Above `warn_missing_news` of the split's
  entries the data report says so at WARNING level; above `max_missing_news` it is an error
  naming the file. Both are `data.preprocess.*` settings (conf/data/_mind.yaml).
- `file_checksums` / `verify_files`: the preprocessing cache records each file's size and
  CRC-32 in its meta.json; a cache whose files do not match (truncated, overwritten, a disk
  that lost a block) is rebuilt, not trusted. CRC-32 reads ~4 GB/s here: a few ms for the
  default world, under a second for MIND-large's arrays.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

from newsrec.data.mind import DataError

log = logging.getLogger(__name__)

_BLOCK = 16 << 20


def check_news_coverage(
    news_file: Path, split: str, missing: int, total: int, max_share: float, warn_share: float
) -> None:
    """`missing` of the `total` history and candidate entries of `split`'s behaviors.tsv name
    a news in no news.tsv: an error above `max_share`, a warning above `warn_share`."""
    share = missing / total if total else 0.0
    what = (
        f"{share:.1%} of the news entries of {split}'s behaviors.tsv ({missing:,} of "
        f"{total:,} history and candidate entries) name a news that no news.tsv has"
    )
    if share > max_share:
        raise DataError(
            f"{news_file}: {what}, more than data.preprocess.max_missing_news="
            f"{max_share:g}. The file is damaged, truncated or from another split. To fix: "
            "restore or re-download it (a MIND news.tsv lists every news its split names), "
            "or raise data.preprocess.max_missing_news to train with them as empty news"
        )
    if share > warn_share:
        log.warning(
            "data report: %s: %s (dropped from histories, scored as empty news); above "
            "data.preprocess.warn_missing_news=%g",
            news_file,
            what,
            warn_share,
        )


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            crc = zlib.crc32(block, crc)
    return crc


def file_checksums(folder: Path) -> dict[str, list[int]]:
    """{file name: [size, CRC-32]} of every file in `folder` but meta.json."""
    return {
        p.name: [p.stat().st_size, _crc32(p)]
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != "meta.json"
    }


def verify_files(folder: Path, recorded: dict[str, list[int]] | None) -> None:
    """Raise ValueError naming the first file of `folder` that is missing or differs from
    its `recorded` size and CRC-32 (a cache without a record is not trusted either)."""
    if not recorded:
        raise ValueError(f"{folder / 'meta.json'} records no checksums (an older cache)")
    for name, (size, crc) in recorded.items():
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path} is missing")
        if path.stat().st_size != size:
            raise ValueError(f"{path} has {path.stat().st_size:,} bytes, {size:,} were written")
        if _crc32(path) != crc:
            raise ValueError(f"{path} differs from what was written (CRC-32)")
