"""xMIND: MIND's news machine-translated into 14 languages, joined to MIND's behaviours by id.

xMIND (Iana, Glavaš, Paulheim, "MIND Your Language", arXiv 2403.17876; github
andreeaiana/xMIND) publishes, per language and split, `xMIND<size>_<split>.zip` holding a
`news.tsv` of 3 tab-separated columns without header: news id (MIND's), title, abstract,
translated with NLLB 3.3B. Its README and download.py name the languages (ISO 639-3 codes,
`XMIND_LANGUAGES`); newsreclib reads the files from `xMIND/<language>/xMIND<size>_<split>/`.

`XMindSource` takes MIND-small (newsrec.data.download.MindSource: on disk or downloaded) and
the translations (on disk under `xmind_dir`, or downloaded), and writes MIND-format folders
whose news.tsv rows are MIND's with the title and abstract of the chosen language; the
behaviours are MIND's own files (linked, not copied). Categories stay MIND's; the entity
columns are emptied, since MIND's entity offsets point into the English text (so models
with entities, DKN, are refused on xMIND). A MIND news without a translation is counted,
reported (log and xmind.json), and left out of news.tsv (as newsreclib's inner join does):
histories drop it, candidates score it as the empty news. More than `max_missing_share` of
a split's news missing stops the run before anything is written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from newsrec.data.download import MindSource, fetch_zip
from newsrec.data.info import SplitPaths
from newsrec.data.mind import DataError, MindFormatError
from newsrec.data.source import DataSource
from newsrec.data.zips import safe_extract
from newsrec.utils.io import atomic_path

log = logging.getLogger(__name__)

# xMIND's README (table) and download.py: the 14 languages, ISO 639-3
XMIND_LANGUAGES = (
    "cmn", "fin", "grn", "hat", "ind", "jpn", "kat", "ron", "som", "swh", "tam", "tha", "tur",
    "vie",
)  # fmt: skip
# MIND's files that travel unchanged into a joined folder (where present)
LINKED = ("behaviors.tsv", "entity_embedding.vec", "relation_embedding.vec")
LINKED_TRUTH = ("click_probability.tsv", "truth.txt")


def read_translations(path: Path) -> dict[str, tuple[str, str]]:
    """xMIND's news.tsv: news id -> (title, abstract); the first row of an id wins."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: xMIND translation file not found")
    out: dict[str, tuple[str, str]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            cols = line.rstrip("\n").rstrip("\r").split("\t")
            if cols == [""]:
                continue
            if len(cols) != 3:
                raise MindFormatError(
                    path, number, f"expected 3 tab-separated columns (nid, title, abstract), "
                    f"found {len(cols)}", "re-download the xMIND file",
                )  # fmt: skip
            out.setdefault(cols[0], (cols[1], cols[2]))
    return out


def join_split(
    mind: Path, translations: Path, out: Path, max_missing_share: float, language: str
) -> dict:
    """Write `out` (a MIND-format folder): MIND's news rows in the translated text, MIND's
    other files linked. Raises DataError (nothing written) above `max_missing_share`."""
    texts = read_translations(translations)
    rows, missing = [], 0
    with open(mind / "news.tsv", encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 8:
                continue  # the MIND reader names such a line; nothing to translate here
            if cols[0] not in texts:
                missing += 1
                continue
            cols[3], cols[4] = texts[cols[0]]
            cols[6] = cols[7] = "[]"
            rows.append("\t".join(cols) + "\n")
    total = len(rows) + missing
    share = missing / max(total, 1)
    if share > max_missing_share:
        raise DataError(
            f"xMIND ({language}): {missing:,} of the {total:,} news of {mind / 'news.tsv'} "
            f"({share:.1%}) have no translation in {translations}, more than the "
            f"{max_missing_share:.1%} allowed (data.source.max_missing_share). To fix: "
            "re-download the xMIND file of that language and split"
        )
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "news.tsv").write_text("".join(rows), encoding="utf-8")
        for name in LINKED + LINKED_TRUTH:
            if (mind / name).is_file():
                _link(mind / name, tmp / name)
        report = {"language": language, "news": total, "missing_translations": missing}
        (tmp / "xmind.json").write_text(json.dumps(report))
    log.info("xMIND %s %s: %s news, %s without a translation", language, mind.name, total, missing)
    return report


def _link(source: Path, target: Path) -> None:
    """A hard link where the file system allows it (the cache key sees MIND's file), else a copy."""
    try:
        os.link(source.resolve(), target)
    except OSError:
        shutil.copyfile(source, target)


class XMindSource(DataSource):
    """data=xmind_small data.language=<code>: MIND-small's behaviours, xMIND's news text.

    `mind_dir`: MIND-small unzipped (MINDsmall_train/, MINDsmall_dev/), else downloaded from
    `mind_mirrors`; `xmind_dir`: the folder holding `<language>/xMINDsmall_<split>/news.tsv`
    (xMIND's own layout), else the zips are downloaded from `xmind_mirrors`
    ({language} and {name} filled in)."""

    splits = ("train", "dev")

    def __init__(
        self,
        language: str,
        mind_mirrors: Sequence[str] = (),
        mind_dir: str | Path | None = None,
        xmind_mirrors: Sequence[str] = (),
        xmind_dir: str | Path | None = None,
        max_missing_share: float = 0.01,
        variant: str = "small",
    ) -> None:
        if language not in XMIND_LANGUAGES:
            raise DataError(
                f"data.language={language!r} is not an xMIND language; choose one of "
                f"{', '.join(XMIND_LANGUAGES)} (ISO 639-3, xMIND's README)"
            )
        self.language, self.variant = language, variant
        self.mind = MindSource(variant, list(mind_mirrors), mind_dir)
        self.xmind_mirrors = [m.replace("{language}", language) for m in xmind_mirrors]
        self.xmind_dir = Path(xmind_dir).expanduser() if xmind_dir else None
        self.max_missing_share = float(max_missing_share)

    def prepare(self, root: str | Path, progress: bool = True) -> SplitPaths:
        mind = self.mind.prepare(root, progress=progress)
        return self.join(root, mind, progress)

    def join(self, root: str | Path, mind: SplitPaths, progress: bool = True) -> SplitPaths:
        """Joined folders under root/xmind/<language>-<variant>/ for `mind`'s splits."""
        base = Path(root) / "xmind" / f"{self.language}-{self.variant}-{_key(mind)}"
        folders = {}
        for split in ("train", "dev", "test"):
            source = getattr(mind, split)
            if source is None:
                continue
            folders[split] = base / split
            if not (folders[split] / "xmind.json").is_file():
                news = self._translations(root, split, progress)
                join_split(
                    Path(source), news, folders[split], self.max_missing_share, self.language
                )
        return SplitPaths(
            train=folders["train"],
            dev=folders["dev"],
            test=folders.get("test"),
            has_truth=mind.has_truth,
        )

    def _translations(self, root: str | Path, split: str, progress: bool) -> Path:
        name = f"xMIND{self.variant}_{split}"
        if self.xmind_dir is not None:
            path = self.xmind_dir / self.language / name / "news.tsv"
            if not path.is_file():
                raise DataError(
                    f"no xMIND translations at {path}: xmind_dir should hold "
                    f"<language>/{name}/news.tsv (xMIND's layout), or be null to download"
                )
            return path
        base = Path(root) / "xmind" / "files" / self.language
        if not (base / name / "news.tsv").is_file():
            zip_path = fetch_zip(
                f"{name}.zip", self.xmind_mirrors, base / "zips", required=("news.tsv",),
                progress=progress,
            )  # fmt: skip
            safe_extract(zip_path, base / name)
        return base / name / "news.tsv"

    def __repr__(self) -> str:
        return f"XMindSource(language={self.language!r}, variant={self.variant!r})"


def _key(mind: SplitPaths) -> str:
    """A short hash of where MIND's folders are: another MIND copy gets other joined folders."""
    import hashlib

    text = json.dumps([str(Path(p).resolve()) for p in (mind.train, mind.dev, mind.test) if p])
    return hashlib.sha256(text.encode()).hexdigest()[:8]
