"""`SyntheticSource`: a synthetic world as a data source, generated once and then reused."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from newsrec.data.info import SplitPaths
from newsrec.data.source import DataSource
from newsrec.data.synthetic.config import PRESETS, WorldConfig
from newsrec.data.synthetic.writer import generate_world, is_complete_world, remove_dead_partials


class SyntheticSource(DataSource):
    """A data source (`newsrec.data.source`): a synthetic world, generated once and then reused.

    `overrides` are WorldConfig field values that replace the preset's. The world is cached
    under root/synthetic/<preset>-seed<seed>-<hash of the full config>, so a changed knob
    (or a new generator version) gets its own folder.
    """

    def __init__(self, preset: str = "synthetic", seed: int = 0, **overrides) -> None:
        if preset not in PRESETS:
            raise ValueError(
                f"unknown synthetic preset {preset!r}; choose one of {sorted(PRESETS)}"
            )
        unknown = set(overrides) - {f for f in WorldConfig.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown WorldConfig fields {sorted(unknown)} for preset {preset!r}")
        self.preset = preset
        self.seed = int(seed)
        self.config = replace(PRESETS[preset], **overrides)

    @property
    def name(self) -> str:
        return f"{self.preset}-seed{self.seed}-{self.config.digest()}"

    def path(self, root: str | Path) -> Path:
        return Path(root) / "synthetic" / self.name

    def prepare(self, root: str | Path, progress: bool = True) -> SplitPaths:
        folder = self.path(root)
        if not is_complete_world(folder):
            remove_dead_partials(folder)
            if folder.exists() and not is_complete_world(folder):
                # not to be trusted: left by an interrupted or foreign process
                shutil.rmtree(folder)
            try:
                generate_world(folder, self.config, self.seed, progress=progress)
            except OSError:
                # another process (e.g. another DDP rank) finished the same world first
                if not is_complete_world(folder):
                    raise
        return SplitPaths(
            train=folder / "train", dev=folder / "dev", test=folder / "test", has_truth=True
        )

    def __repr__(self) -> str:
        return f"SyntheticSource(preset={self.preset!r}, seed={self.seed})"
