"""What RADio, results by slice and the re-rankers add to eval.py, one command:

    python benchmarks/bench_beyond.py                                  # synthetic_small dev
    python benchmarks/bench_beyond.py --checkpoint CKPT                # a trained checkpoint
    python benchmarks/bench_beyond.py --data synthetic_large --split test --variants plain radio

Variants, each `newsrec.evaluate.evaluate` (what `python eval.py` runs) in its own process so
its peak memory is its own, on the same checkpoint and split:
- plain: the beyond-accuracy callback only (`~callbacks.radio ~callbacks.slices`), as before;
- radio: the default callbacks: + RADio's metrics + results by slice;
- radio+mmr / radio+calibration / radio+xquad: + that re-ranker at weight 0.3, depth 10.
The per-news features are computed once first (`features`, cold: an empty cache folder; the
eval variants then find them cached, as every run after the first does). Without
--checkpoint an untrained NRMS at paper sizes is saved first: the cost is the same whatever
the weights. Figures, with the machine, the date and the load average before and after
(another job on the machine shows there), go to benchmarks/results_beyond.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

VARIANTS = {
    "plain": ["~callbacks.radio", "~callbacks.slices"],
    "radio": [],
    "radio+mmr": ["rerank=mmr", "rerank.weight=0.3"],
    "radio+calibration": ["rerank=calibration", "rerank.weight=0.3"],
    "radio+xquad": ["rerank=xquad", "rerank.weight=0.3"],
}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB on Linux


def child_features(data: str, data_dir: str) -> dict:
    """Cold and warm per-news features of `data`'s news table."""
    from bench_recommend import compose

    from newsrec import build
    from newsrec.evaluation.news_features import load_or_compute
    from newsrec.evaluation.radio_callback import news_files

    cfg, _ = compose("eval", [f"data={data}", f"paths.data_dir={data_dir}", "ckpt_path=x"])
    datamodule = build.datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("test")
    files = news_files(datamodule.paths)
    with tempfile.TemporaryDirectory() as cold:
        start = time.perf_counter()
        features = load_or_compute(files, cold, progress=False)
        cold_s = time.perf_counter() - start
    load_or_compute(files, datamodule.cache_dir, progress=False)  # the eval runs' cache
    start = time.perf_counter()
    load_or_compute(files, datamodule.cache_dir, progress=False)
    return {
        "news": len(features) - 1,
        "cold_s": round(cold_s, 1),
        "warm_s": round(time.perf_counter() - start, 2),
        "peak_gib": round(peak_rss_gib(), 2),
    }


def child_eval(args: argparse.Namespace, variant: str, out: str) -> dict:
    from bench_recommend import compose

    from newsrec.evaluate import evaluate

    overrides = [
        f"data={args.data}",
        f"data.test_split={args.split}",
        f"paths.data_dir={args.data_dir}",
        f"paths.output_dir={out}",
        f"ckpt_path={args.checkpoint}",
        "+trainer.enable_progress_bar=false",
        *VARIANTS[variant],
    ]
    cfg, _ = compose("eval", overrides)
    start = time.perf_counter()
    metrics = evaluate(cfg)
    seconds = time.perf_counter() - start
    keys = ("test/auc", "test/ndcg@10", "test/diversity_vector@10", "test/calibration_category@10")
    return {
        "evaluate_s": round(seconds, 1),
        "peak_gib": round(peak_rss_gib(), 2),
        **{k: metrics[k] for k in keys if k in metrics},
    }


def run_child(args: argparse.Namespace, *extra: str) -> dict:
    command = [sys.executable, __file__, "--data", args.data, "--split", args.split]
    command += ["--data-dir", args.data_dir, "--checkpoint", str(args.checkpoint), *extra]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{extra} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic_small")
    parser.add_argument("--split", default="dev", help="dev: labeled (tested); test: predicted")
    parser.add_argument("--data-dir", default=os.environ.get("NEWSREC_DATA_DIR", "data"))
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_beyond.json"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_features(args.data, args.data_dir) if kind == "features" else None
        result = result or child_eval(args, rest[0], rest[1])
        print(json.dumps(result))
        return
    from bench import machine

    results = {
        "machine": machine(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "data": args.data,
        "split": args.split,
    }
    with tempfile.TemporaryDirectory() as tmp:
        if not args.checkpoint:
            from bench_recommend import untrained_checkpoint

            args.checkpoint = str(Path(tmp) / "nrms.ckpt")
            results["checkpoint"] = untrained_checkpoint(
                args.data, args.data_dir, Path(tmp) / "nrms.ckpt"
            )
        results["features"] = run_child(args, "--child", "features")
        print(json.dumps({"features": results["features"]}), flush=True)
        for variant in args.variants:
            results[variant] = run_child(args, "--child", "eval", variant, str(Path(tmp) / variant))
            print(json.dumps({variant: results[variant]}), flush=True)
    base = results.get("plain", {}).get("evaluate_s")
    if base is not None:
        results["added_s"] = {
            v: round(results[v]["evaluate_s"] - base, 1) for v in args.variants if v != "plain"
        }
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
