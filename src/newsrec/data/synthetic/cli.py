"""`python -m newsrec.data.synthetic --preset synthetic --seed 0 --out DIR [--set KNOB=VALUE ...]`"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from newsrec.constants import SPLITS
from newsrec.data.synthetic.config import PRESETS, WorldConfig
from newsrec.data.synthetic.source import SyntheticSource
from newsrec.data.synthetic.writer import generate_world


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m newsrec.data.synthetic",
        description="Write a synthetic MIND-format world (train/dev/test) to a folder.",
    )
    parser.add_argument("--preset", default="synthetic", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="target folder (default: data/synthetic/<preset>-seed<seed>-<hash>)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KNOB=VALUE",
        help="override WorldConfig fields, e.g. --set num_news=5000",
    )
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in WorldConfig.__dataclass_fields__:
            parser.error(f"unknown knob {key!r}")
        kind = type(getattr(PRESETS[args.preset], key))
        overrides[key] = kind(value)
    source = SyntheticSource(args.preset, args.seed, **overrides)
    out = args.out if args.out is not None else source.path("data")
    started = time.perf_counter()
    generate_world(
        out, source.config, args.seed, progress=not args.no_progress, overwrite=args.overwrite
    )
    seconds = time.perf_counter() - started
    summary = json.loads((out / "world.json").read_text())
    print(f"wrote {out} in {seconds:.1f} s (preset {args.preset}, seed {args.seed})")
    total = 0
    for split in SPLITS:
        s = summary["splits"][split]
        size = sum(p.stat().st_size for p in (out / split).iterdir())
        total += size
        print(
            f"  {split:5s} {s['impressions']:>9,} impressions {s['users']:>8,} users "
            f"{s['news']:>7,} news {s['candidates']:>11,} candidates {s['clicks']:>9,} clicks "
            f"{size / 2**20:9.1f} MiB"
        )
    print(f"  total {total / 2**20:.1f} MiB")
