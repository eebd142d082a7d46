"""Training memory and speed over many fresh batches, as a user's run sees them:

    python benchmarks/bench_memory.py                        # fp32, bf16: 2,000 steps each
    python benchmarks/bench_memory.py --modes bf16 --steps 500 --env ONEDNN_PRIMITIVE_CACHE_CAPACITY=0
    python benchmarks/bench_memory.py --model naml --modes bf16 --out benchmarks/results_memory_naml.json
    python benchmarks/bench_memory.py --set model.engine=plain       # any Hydra override

NRMS (or `--model`) at paper sizes on `synthetic_small` (MIND-small's counts), batch 64: every step takes
the next batch of the training loader (fresh negatives, fresh news, so fresh shapes), not a
replay of a few batches. Each mode runs in its own process and records, every `--every`
steps, the resident memory (VmRSS) and the samples/s of the last window. The figure that
matters is the growth after warm-up: RSS at the end over RSS at step `--settle`.
Results: benchmarks/results_memory.json; benchmarks/RESULTS.md records the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import SETTINGS, _module, config, datamodule, machine, train_step  # noqa: E402  (benchmarks/bench.py)

MODES = {  # mode: (precision, torch.compile)
    "fp32": ("32-true", False),
    "bf16": ("bf16-mixed", False),
    "bf16_compile": ("bf16-mixed", True),
    "fp32_compile": ("32-true", True),
}


def rss_gib() -> float:
    """Resident memory now (not the peak), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20  # kB -> GiB
    return float("nan")


def run_mode(args) -> dict:
    import torch

    precision, compile_ = MODES[args.mode]
    if args.no_buckets:  # the reference: every batch at its own shapes, as before buckets
        import newsrec.models.engine.fast as fast
        import newsrec.models.engine.packing as packing

        packing.bucket = fast.bucket = lambda n: n
    torch.manual_seed(0)
    cfg = config(args.data, args.data_dir, model=args.model)
    dm = datamodule(cfg)
    dm.setup("fit")
    module = _module(cfg, dm).train()
    if compile_:
        module.recommender.news_encoder.compile(dynamic=True)
        module.recommender.user_encoder.compile(dynamic=True)
    optimizer = module.configure_optimizers()
    amp = precision == "bf16-mixed"
    batches = iter(dm.train_dataloader())
    series, start, window = [], time.perf_counter(), time.perf_counter()
    for step in range(1, args.steps + 1):
        train_step(module, optimizer, next(batches), amp)
        if step % args.every == 0:
            now = time.perf_counter()
            rate = dm.batch_size * args.every / (now - window)
            series.append({"step": step, "rss_gib": rss_gib(), "samples_per_s": rate})
            window = now
            print(json.dumps(series[-1]), file=sys.stderr, flush=True)
    settled = [p for p in series if p["step"] >= args.settle]
    first, last = settled[0], series[-1]
    steady = [p["samples_per_s"] for p in settled]
    return {
        "mode": args.mode,
        "precision": precision,
        "compile": compile_,
        "env": {k: os.environ[k] for k in args.env_names if k in os.environ},
        "buckets": not args.no_buckets,
        "steps": args.steps,
        "seconds": time.perf_counter() - start,
        "rss_at_settle_gib": first["rss_gib"],
        "rss_end_gib": last["rss_gib"],
        "rss_max_after_settle_gib": max(p["rss_gib"] for p in settled),
        "growth_after_settle": max(p["rss_gib"] for p in settled) / first["rss_gib"] - 1,
        "samples_per_s_after_settle": sorted(steady)[len(steady) // 2],  # median window
        "samples_per_s_first_window": series[0]["samples_per_s"],
        "series": series,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", default="synthetic_small")
    parser.add_argument("--model", default="nrms", help="a preset of conf/model")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16"], choices=list(MODES))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=100, help="steps between two readings")
    parser.add_argument("--settle", type=int, default=200, help="warm-up steps, not judged")
    parser.add_argument("--no-buckets", action="store_true", help="shapes unbucketed (reference)")
    parser.add_argument("--env", nargs="*", default=[], help="NAME=VALUE for the children")
    parser.add_argument(
        "--set", action="append", default=[], help="a Hydra override, e.g. model.engine=plain"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_memory.json"))
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.env_names = [item.partition("=")[0] for item in args.env]
    SETTINGS.extend(args.set)
    if args.mode:
        print(json.dumps(run_mode(args)))
        return
    env = {**os.environ, **dict(item.split("=", 1) for item in args.env)}
    results = {"machine": machine(), "date": date.today().isoformat(), "data": args.data}
    results["model"] = args.model
    results["settings"] = args.set
    for mode in args.modes:
        command = [sys.executable, __file__, "--mode", mode, "--data", args.data]
        command += ["--model", args.model]
        command += ["--data-dir", args.data_dir, "--steps", str(args.steps)]
        command += ["--every", str(args.every), "--settle", str(args.settle)]
        command += ["--no-buckets"] if args.no_buckets else []
        command += ["--env", *args.env, *(f"--set={setting}" for setting in args.set)]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"{mode} failed")
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        summary = {k: v for k, v in results[mode].items() if k != "series"}
        print(mode, json.dumps(summary), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
