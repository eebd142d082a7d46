"""The README and docs/ name modules, files and configs that exist: a page that names a moved
or deleted module fails here, not in a reader's hands."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Every file of the project, by its path from the root: a page may name a file by its full
# path or by its last parts where the package is clear from the text (`data/mind.py`, `mind.py`).
FILES = [
    "/" + str(p.relative_to(ROOT))
    for folder in ("src", "conf", "benchmarks", "docs", "tests")
    for p in (ROOT / folder).rglob("*")
    if p.is_file()
] + ["/" + p.name for p in ROOT.glob("*.py")]
SOURCE = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.(?:py|yaml))\b")
MODULE = re.compile(r"\bnewsrec(?:\.\w+)+")
# Files the commands write (run folders, sweeps, exports) or a user writes (the README's
# example): named in the pages, present only after a run.
WRITTEN = {
    "my_models.py",
    "title_mean.yaml",
    "multirun.yaml",
    "config.yaml",
    "overrides.yaml",
    "hparams.yaml",
}


def named_paths(text: str) -> set[str]:
    return {m.group(1) for m in SOURCE.finditer(text)}


def exists(path: str) -> bool:
    if Path(path).name in WRITTEN or "<" in path or "*" in path:
        return True
    return any(f.endswith("/" + path) for f in FILES)


def importable(dotted: str) -> bool:
    """`newsrec.a.b`: a module, or an attribute of the longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            target = importlib.import_module(name)
            for attribute in parts[cut:]:
                if not hasattr(target, attribute):
                    return False
                target = getattr(target, attribute)
            return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_a_page_names_exists(page):
    missing = sorted(p for p in named_paths(page.read_text()) if not exists(p))
    assert not missing, f"{page.relative_to(ROOT)} names files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_module_a_page_names_imports(page):
    names = {m.group(0).rstrip(".") for m in MODULE.finditer(page.read_text())}
    missing = sorted(n for n in names if not importable(n))
    assert not missing, f"{page.relative_to(ROOT)} names modules that do not exist: {missing}"


def test_the_checks_catch_a_moved_module():
    assert not exists("models/layers.py") and exists("models/layers/attention.py")
    assert not importable("newsrec.ranking") and importable("newsrec.serving.ranking")
    assert importable("newsrec.evaluation.metrics.impression_metrics")


def test_the_contracts_metrics_name_is_the_evaluation_packages_function():
    """DESIGN.md's contract: `newsrec.metrics.impression_metrics(scores, labels, ids)`."""
    import newsrec.evaluation.metrics
    import newsrec.metrics

    assert newsrec.metrics.impression_metrics is newsrec.evaluation.metrics.impression_metrics
    result = newsrec.metrics.impression_metrics([0.9, 0.1, 0.2], [1, 0, 0], [7, 7, 7])
    assert result["auc"] == 1.0 and result["mrr"] == 1.0
    assert named_paths("see `src/newsrec/data/mind.py`, conf/model/nrms.yaml.") == {
        "src/newsrec/data/mind.py",
        "conf/model/nrms.yaml",
    }
