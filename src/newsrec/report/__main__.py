"""`python -m newsrec.report SWEEP_DIR`: rebuild a sweep's comparison table, chart and CSV."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from newsrec.report import CHART_NAME, CSV_NAME, MARKDOWN_NAME, build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m newsrec.report",
        description="Rebuild comparison.{md,csv,png} of a sweep from its runs' metrics.json.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep's folder (multirun/...)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        markdown = build_report(args.sweep_dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(markdown.read_text(encoding="utf-8"))
    written = ", ".join(str(markdown.with_name(n)) for n in (MARKDOWN_NAME, CSV_NAME, CHART_NAME))
    print(f"written: {written}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
