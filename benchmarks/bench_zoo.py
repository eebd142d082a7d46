"""The whole model zoo in one command: training samples/s (float32 and bf16), full dev
evaluation time and peak memory of every preset, one model after another, at MIND-small
scale (`synthetic_small`):

    python benchmarks/bench_zoo.py                          # every preset -> results_zoo.json
    python benchmarks/bench_zoo.py --models nrms naml lstur # some
    python benchmarks/bench_zoo.py --peers benchmarks/results_peers.json  # + yusanshi's

Each measurement runs in its own process (bench.py's parts: the same batches for every
round, median of `--rounds`, peak RSS of that process alone). With `--peers` (the output of
benchmarks/peers/yusanshi.py, measured right before or after on the same data) the table
shows each model's speed-up over the peer's same model. The Markdown table is printed and
written beside the JSON (`.md`).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import child, machine  # noqa: E402  (benchmarks/bench.py)

from newsrec.config import model_presets  # noqa: E402

# nrms_plm needs a pretrained model (benchmarks/bench_plm.py); nrms_docvec document vectors
# (EB-NeRD: benchmarks/RESULTS.md)
ZOO = [m for m in model_presets() if m not in ("nrms_plm", "nrms_docvec")]


def measure(model: str, args) -> dict:
    """Training in float32 and bf16, then the full dev evaluation, of one model."""
    args.model = model
    out = {"model": model}
    for mode in ("dedup", "bf16"):
        out[mode] = child("train", args, "--mode", mode)
    out["eval"] = child("eval", args)
    return out


def table(rows: list[dict], peers: dict) -> str:
    """Markdown: samples/s, share of NRMS's, evaluation time, memory, speed-up over the peer."""
    nrms = next((r for r in rows if r["model"] == "nrms"), None)
    lines = [
        "| model | train fp32 (samples/s) | train bf16 | vs NRMS fp32 / bf16 | dev eval fp32 (s) "
        "| vs NRMS | peak train / eval (GiB) | yusanshi (samples/s) | speed-up fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        fp32, bf16 = r["dedup"]["samples_per_s"], r["bf16"]["samples_per_s"]
        seconds = r["eval"]["32-true"]["seconds"]
        share = eval_share = "-"
        if nrms is not None:
            share = (
                f"{fp32 / nrms['dedup']['samples_per_s']:.2f} / "
                f"{bf16 / nrms['bf16']['samples_per_s']:.2f}"
            )
            eval_share = f"{seconds / nrms['eval']['32-true']['seconds']:.2f}x"
        peak = max(r["dedup"]["peak_gib"], r["bf16"]["peak_gib"])
        peer = peers.get(r["model"])
        peer_cell = "-" if peer is None else f"{peer:.1f}"
        speedup = "-" if peer is None else f"{fp32 / peer:.1f}x"
        lines.append(
            f"| {r['model']} | {fp32:.1f} | {bf16:.1f} | {share} | {seconds:.1f} | {eval_share} "
            f"| {peak:.2f} / {r['eval']['peak_gib']:.2f} | {peer_cell} | {speedup} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", default="synthetic_small")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--models", nargs="+", default=ZOO, choices=ZOO)
    parser.add_argument("--steps", type=int, default=10, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", default=["32-true"], help="evaluation's")
    parser.add_argument("--peers", help="results of benchmarks/peers/yusanshi.py")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_zoo.json"))
    parser.add_argument(
        "--set", action="append", default=[], help="a Hydra override, e.g. model.engine=plain"
    )
    args = parser.parse_args()
    peers = {}
    if args.peers:
        measured = json.loads(Path(args.peers).read_text())["models"]
        peers = {name: r["samples_per_s"] for name, r in measured.items()}
    results = {"machine": machine(), "date": date.today().isoformat(), "data": args.data}
    results["settings"] = args.set
    rows, out = [], Path(args.out)
    for model in args.models:  # written after each model: a run cut short keeps what it measured
        rows.append(measure(model, args))
        print(model, json.dumps({k: rows[-1][k] for k in ("dedup", "bf16")}), flush=True)
        results["models"] = rows
        markdown = table(rows, peers)
        out.write_text(json.dumps(results, indent=2))
        out.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)
    print(f"written to {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
