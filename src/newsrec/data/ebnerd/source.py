"""`EbnerdSource`: EB-NeRD on disk, or fetched through the mirror mechanism MIND uses.

The published layout (recsys.eb.dk; the toolkit's notebooks read it so):

    ebnerd_demo/ | ebnerd_small/ | ebnerd_large/     one bundle
        articles.parquet
        train/behaviors.parquet        train/history.parquet
        validation/behaviors.parquet   validation/history.parquet
    ebnerd_testset/                                   the separate test set (unlabeled)
        articles.parquet               test/behaviors.parquet   test/history.parquet
    ebnerd_testset_gt/test/behaviors.parquet          its clicks, where a user has them
    artifacts/<name>/<name>.parquet                   document vectors (article_id, vector)

`data_dir` may point at the folder holding `ebnerd_<variant>/` (and `ebnerd_testset/`) or at
the bundle folder itself. Without `data_dir`, the zips `ebnerd_<variant>.zip`,
`ebnerd_testset.zip` and `artifacts/<name>.zip` are downloaded from the mirrors into
<root>/ebnerd/zips/ and unzipped under <root>/ebnerd/ (newsrec.data.download: resumed
downloads, checked zips, all-or-nothing extraction).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from newsrec.data.download import fetch_zip
from newsrec.data.info import SplitPaths
from newsrec.data.mind import DataError
from newsrec.data.source import DataSource
from newsrec.data.zips import safe_extract

log = logging.getLogger(__name__)

VARIANTS = ("demo", "small", "large")
BUNDLE_MEMBERS = (
    "articles.parquet",
    "train/behaviors.parquet",
    "train/history.parquet",
    "validation/behaviors.parquet",
    "validation/history.parquet",
)
TESTSET_MEMBERS = ("articles.parquet", "test/behaviors.parquet", "test/history.parquet")


def bundle_paths(
    bundle: Path, testset: Path | None, vectors: Path | None, column: str | None
) -> SplitPaths:
    """SplitPaths of an EB-NeRD bundle folder (and test set folder), files checked."""
    _require(bundle, BUNDLE_MEMBERS, "an EB-NeRD bundle (ebnerd_demo/, ebnerd_small/, ...)")
    articles = [bundle / "articles.parquet"]
    if testset is not None:
        _require(testset, TESTSET_MEMBERS, "the EB-NeRD test set (ebnerd_testset/)")
        articles.append(testset / "articles.parquet")
    truth = testset is not None and (testset / "test" / "click_probability.parquet").is_file()
    return SplitPaths(
        train=bundle / "train",
        dev=bundle / "validation",
        test=testset / "test" if testset is not None else None,
        has_truth=truth and (bundle / "train" / "click_probability.parquet").is_file(),
        layout="ebnerd",
        articles=tuple(articles),
        document_vectors=vectors,
        document_vector_column=column,
    )


def _require(folder: Path, members: Sequence[str], what: str) -> None:
    missing = [m for m in members if not (folder / m).is_file()]
    if missing:
        raise DataError(
            f"{folder} is not {what}: it lacks {', '.join(missing)}. To fix: point "
            "data.source.data_dir at the folder holding ebnerd_<variant>/ (or at the bundle "
            "itself), unzipped as published, or set it to null to download EB-NeRD"
        )


class EbnerdSource(DataSource):
    """EB-NeRD's `variant` bundle (demo, small, large), with the test set if `testset`.

    `document_vectors`: None, an artifact name (`Ekstra_Bladet_contrastive_vector`,
    `Ekstra_Bladet_word2vec`, `google_bert_base_multilingual_cased`,
    `FacebookAI_xlm_roberta_base`: found under <data_dir>/artifacts/ or downloaded), or the
    path of a parquet of article_id and one vector column (`document_vector_column`, by
    default the last column, as the toolkit's examples take it).
    """

    def __init__(
        self,
        variant: str = "demo",
        mirrors: Sequence[str] = (),
        data_dir: str | Path | None = None,
        testset: bool = False,
        document_vectors: str | None = None,
        document_vector_column: str | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown EB-NeRD variant {variant!r}; expected one of {VARIANTS}")
        self.variant, self.mirrors, self.testset = variant, list(mirrors), bool(testset)
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self.document_vectors = document_vectors
        self.document_vector_column = document_vector_column

    def prepare(self, root: str | Path, progress: bool = True) -> SplitPaths:
        base = Path(root) / "ebnerd"
        if self.data_dir is not None:
            bundle, testset = self._given()
        else:
            bundle = self._fetched(base, f"ebnerd_{self.variant}", BUNDLE_MEMBERS, progress)
            testset = None
            if self.testset:
                testset = self._fetched(base, "ebnerd_testset", TESTSET_MEMBERS, progress)
        vectors = self._vectors(base, bundle, progress)
        return bundle_paths(bundle, testset, vectors, self.document_vector_column)

    def _given(self) -> tuple[Path, Path | None]:
        folder = self.data_dir
        bundle = folder / f"ebnerd_{self.variant}"
        if not bundle.is_dir() and (folder / "train").is_dir():
            bundle = folder  # data_dir is the bundle itself
        testset = None
        if self.testset:
            testset = bundle.parent / "ebnerd_testset"
            if not testset.is_dir():
                raise DataError(
                    f"no EB-NeRD test set at {testset}: unzip ebnerd_testset.zip beside "
                    f"{bundle.name}/, or set data.source.testset=false data.test_split=dev"
                )
        return bundle, testset

    def _fetched(
        self, base: Path, name: str, members: Sequence[str], progress: bool, folder: str = ""
    ) -> Path:
        """base/name, unzipped from `name`.zip (at `folder`/ on the mirrors) if not there."""
        target = base / name
        if not target.exists():
            mirrors = [m.replace("{name}", folder + "{name}") for m in self.mirrors]
            if not mirrors:
                raise DataError(
                    f"{target} is not there and no mirror is configured to download {name}.zip;"
                    " set data.source.data_dir to an unzipped copy"
                )
            zip_path = fetch_zip(
                f"{name}.zip", mirrors, base / "zips", required=members, progress=progress
            )
            log.info("extracting %s to %s", zip_path.name, target)
            safe_extract(zip_path, target)
        return target

    def _vectors(self, base: Path, bundle: Path, progress: bool) -> Path | None:
        name = self.document_vectors
        if not name:
            return None
        path = Path(name).expanduser()
        if path.suffix == ".parquet" or path.is_file():
            if not path.is_file():
                raise DataError(f"data.source.document_vectors={name}: no such file")
            return path
        for folder in (bundle.parent / "artifacts" / name, base / "artifacts" / name):
            found = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
            if found:
                return found[0]
        if self.data_dir is not None or not self.mirrors:
            raise DataError(
                f"document vectors {name!r} not found under {bundle.parent / 'artifacts'}: "
                "unzip the artifact there, or give the path of its parquet file"
            )
        target = self._fetched(base / "artifacts", name, (), progress, folder="artifacts/")
        found = sorted(target.rglob("*.parquet"))
        if not found:
            raise DataError(f"the artifact {name} ({target}) holds no parquet file")
        return found[0]

    def __repr__(self) -> str:
        return f"EbnerdSource(variant={self.variant!r}, testset={self.testset})"
