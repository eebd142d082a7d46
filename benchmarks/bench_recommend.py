"""recommend.py's pool=all at MIND-small scale: every dev impression ranked against every news.

    python benchmarks/bench_recommend.py                          # synthetic_small, NRMS
    python benchmarks/bench_recommend.py --checkpoint CKPT        # a trained checkpoint
    python benchmarks/bench_recommend.py --data synthetic --pools all impression

Without --checkpoint, an untrained NRMS at paper sizes (300-d words, 16 x 16 heads, a
256-d news vector) is saved first: ranking costs the same whatever the weights. Each pool
runs `newsrec.serving.recommend.recommend` as `python recommend.py ... pool=<pool>` does, in its own
process so that its peak memory is its own, and the figures go to
benchmarks/results_recommend.json (machine and date included; RESULTS.md records them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB on Linux


def compose(name: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    import newsrec.config  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(name, overrides=overrides)
    return cfg, open_dict


def untrained_checkpoint(data: str, data_dir: str, path: Path) -> dict:
    """An NRMS at paper sizes for `data`, saved as train.py's checkpoints are."""
    import pytorch_lightning as pl
    import torch

    from newsrec import build

    start = time.perf_counter()
    cfg, _ = compose("train", [f"data={data}", f"paths.data_dir={data_dir}", "paths.output_dir=."])
    datamodule = build.datamodule(cfg, build.declared_inputs(cfg.model))
    datamodule.prepare_data()
    datamodule.setup("test")
    module = build.module(cfg, datamodule.info)
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": pl.__version__,
        "newsrec": datamodule.checkpoint_extra(),
    }
    torch.save(checkpoint, path)
    return {"prepare_s": round(time.perf_counter() - start, 1), "news": datamodule.info.num_news}


def run_pool(args: argparse.Namespace, checkpoint: str, pool: str, out: str) -> dict:
    """One recommend() run, in this process (called in a child process by main)."""
    import torch

    from newsrec.serving.recommend import recommend

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [
        f"data={args.data}",
        f"paths.data_dir={args.data_dir}",
        f"paths.output_dir={out}",
        f"ckpt_path={checkpoint}",
        f"k={args.k}",
        f"pool={pool}",
        f"split={args.split}",
        "device=cpu",
    ]
    cfg, open_dict = compose("recommend", overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = out
    before = peak_rss_gib()
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    summary = recommend(cfg)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    size = (Path(out) / "recommendations.jsonl").stat().st_size
    return {
        "pool": pool,
        "impressions": summary["impressions"],
        "encode_news_s": summary["encode_news_s"],
        "rank_s": summary["rank_s"],
        "wall_s_incl_loading_and_writing": round(wall, 1),
        # Other tenants share these cores: CPU seconds and the load average say how much.
        "cpu_s_incl_loading_and_writing": round(cpu, 1),
        "threads": torch.get_num_threads(),
        "load_average_1min": [round(load, 1), round(os.getloadavg()[0], 1)],
        "peak_rss_gib": round(peak_rss_gib(), 2),
        "peak_rss_before_gib": round(before, 2),
        "jsonl_mib": round(size / 2**20, 1),
        **{k: v for k, v in summary.items() if "@" in k},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic_small")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--checkpoint", default=None, help="default: an untrained paper-size NRMS")
    parser.add_argument("--pools", nargs="+", default=["all", "impression"])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--split", default="dev", help="dev: MIND-small's 73k impressions")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_recommend.json"))
    parser.add_argument("--child", nargs=2, metavar=("CHECKPOINT", "POOL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as out:
            print("RESULT " + json.dumps(run_pool(args, *args.child, out)), flush=True)
        return

    with tempfile.TemporaryDirectory() as tmp:
        results: dict = {
            "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
            "cpu": _cpu_name(),
            "date": date.today().isoformat(),
            "data": args.data,
            "k": args.k,
        }
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = str(Path(tmp) / "nrms_untrained.ckpt")
            results["checkpoint"] = "untrained NRMS, paper sizes"
            results.update(untrained_checkpoint(args.data, args.data_dir, Path(checkpoint)))
        else:
            results["checkpoint"] = checkpoint
        for pool in args.pools:
            child = [sys.executable, __file__, *sys.argv[1:], "--child", checkpoint, pool]
            done = subprocess.run(child, capture_output=True, text=True, cwd=ROOT)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if done.returncode or line is None:
                sys.exit(f"pool={pool} failed:\n{done.stderr[-3000:]}")
            results[f"pool={pool}"] = json.loads(line[len("RESULT ") :])
            print(json.dumps(results[f"pool={pool}"], indent=2), flush=True)
    tmp_out = Path(args.out).with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(results, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"written to {args.out}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
