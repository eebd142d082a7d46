"""The data-source contract: where a run's MIND-format folders come from.

`MindDataModule` knows nothing about downloads or generators: it calls `source.prepare(root)`
and reads the folders it gets back. Two sources ship with newsrec, `MindSource` (MIND itself,
downloaded or already on disk; `newsrec.data.download`) and `SyntheticSource` (a generated
world; `newsrec.data.synthetic`). A new one is a subclass plus a `conf/data/*.yaml` whose
`source._target_` names it.
"""

from __future__ import annotations

import abc
from pathlib import Path

from newsrec.data.info import SplitPaths


class DataSource(abc.ABC):
    """Something that can put MIND-format split folders on disk and say where they are."""

    @abc.abstractmethod
    def prepare(self, root: str | Path, progress: bool = True) -> SplitPaths:
        """Make the split folders exist (downloading or generating under `root` if needed).

        What a caller may rely on:
        - each returned folder holds news.tsv and behaviors.tsv in MIND's format (and
          entity_embedding.vec where the data has entities); `train` and `dev` are labeled,
          `test` is None or the unlabeled leaderboard split;
        - `has_truth` is True only if every folder also holds click_probability.tsv, and
          test/truth.txt holds the test split's hidden clicks;
        - a folder that exists is complete: anything built is built under a temporary name
          and renamed at the end, so an interrupted run leaves nothing that looks finished;
        - calling it again with the same `root` reuses what is there (nothing is fetched or
          generated twice), and several processes may call it at once (DDP ranks): one
          finishing first is not an error for the others;
        - `progress=False` draws no progress bar (tests, non-interactive jobs).
        """
