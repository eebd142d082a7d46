"""newsrec benchmarks at MIND-small scale (the `synthetic_small` world), one command:

    python benchmarks/bench.py                      # all parts -> benchmarks/results.json
    python benchmarks/bench.py --parts train eval   # a subset
    python benchmarks/bench.py --modes dedup naive  # some training modes only
    python benchmarks/bench.py --model naml         # another model (bench_zoo.py: all of them)
    python benchmarks/bench.py --data synthetic     # another data config (quick look)

benchmarks/RESULTS.md records the runs with machine and date. Parts (each in its own
process, so peak memory is its own):
- generate / preprocess: world generation; cold (empty cache) and warm (cache hit)
  preprocessing time and peak memory;
- pipeline: the training data pipeline alone (setup, samples index, batches/s, memory);
- train: steady-state training samples/s of a model (`--model`, NRMS by default) at paper
  sizes (batch 64, K = 4, history 50, title 30), in modes (TRAIN_MODES): float32 and bf16
  autocast with the fast engine (the defaults), bf16 with torch.compile, and a reference in
  the same run: naive (engine=plain, every slot at padded width: what the peers do). Median and best of several rounds over the same
  batches, peak memory, FLOPs per step (torch.utils.flop_counter) and the model FLOP
  utilisation against this machine's measured matmul throughput;
- eval: full evaluation of the dev split (every impression), float32 and bf16, and the
  metrics' agreement between the two.
"""

from __future__ import annotations

import argparse
import json
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


# Hydra overrides every part's config gets (`--set`, e.g. model.news_encoder.filters=300).
SETTINGS: list[str] = []


def config(data: str, data_dir: str, overrides: list[str] = (), model: str = "nrms"):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    import newsrec.config  # noqa: F401

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"data={data}",
                f"model={model}",
                f"paths.data_dir={data_dir}",
                "paths.output_dir=.",
                *overrides,
                *SETTINGS,
            ],
        )
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp()
    return cfg


def datamodule(cfg, cache_dir: str | None = None):
    from omegaconf import open_dict

    from newsrec import build

    if cache_dir:
        with open_dict(cfg):
            cfg.data.cache_dir = cache_dir
    return build.datamodule(cfg, build.declared_inputs(cfg.model))


# --- parts (each runs in a child process) --------------------------------------------------


def part_generate(args) -> dict:
    cfg = config(args.data, args.data_dir)
    source = datamodule(cfg).source
    start = time.perf_counter()
    paths = source.prepare(args.data_dir)
    size = sum(f.stat().st_size for f in paths.train.parent.rglob("*") if f.is_file())
    return {
        "generate_s": time.perf_counter() - start,
        "disk_gib": size / 2**30,
        "peak_gib": peak_rss_gib(),
    }


def part_preprocess(args) -> dict:
    from newsrec.data.preprocess import load_or_build

    cfg = config(args.data, args.data_dir)
    dm = datamodule(cfg)
    paths = dm.source.prepare(args.data_dir)
    start = time.perf_counter()
    data = load_or_build(paths, dm.preprocess_config, args.cache_dir)
    seconds = time.perf_counter() - start
    info = data.info()
    return {
        "seconds": seconds,
        "peak_gib": peak_rss_gib(),
        "news": info.num_news,
        "vocab": info.vocab_size,
        "impressions": {k: len(v) for k, v in data.splits.items()},
    }


def part_pipeline(args) -> dict:
    """The training data pipeline alone: setup, the samples index, then batches/s."""
    cfg = config(args.data, args.data_dir)
    dm = datamodule(cfg)
    start = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    loader = iter(dm.train_dataloader())  # builds the samples index (one per click)
    index_s = time.perf_counter() - start
    batches = args.steps * args.rounds
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    seconds = time.perf_counter() - start
    return {
        "setup_s": setup_s,
        "samples_index_s": index_s,
        "samples": len(dm.train_samples()),
        "batches": batches,
        "batches_per_s": batches / seconds,
        "samples_per_s": batches * dm.batch_size / seconds,
        "peak_gib": peak_rss_gib(),
    }


def _module(cfg, dm, stages: tuple[str, ...] = ()):
    """The module as train.py builds it, given the data of evaluation `stages`."""
    from newsrec import build

    module = build.module(cfg, dm.info)
    module.use_data(build.module_data(dm, stages))
    return module


def train_step(module, optimizer, batch, amp: bool = False, device_type: str = "cpu") -> None:
    """One optimiser step on `batch` as NewsRecModule.training_step computes it (eq. 11-13),
    under bf16 autocast if `amp`: what every benchmark here times."""
    import torch
    import torch.nn.functional as F

    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        logits = module.recommender(batch, module.table)  # eq. 11: [B, 1 + K]
    loss = F.cross_entropy(logits.float(), batch["target"])  # eq. 12-13
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def matmul_tflops(dtype) -> float:
    import torch

    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    start, n = time.perf_counter(), 10
    for _ in range(n):
        a @ b
    return 2 * 2048**3 * n / (time.perf_counter() - start) / 1e12


TRAIN_MODES = {
    # mode: (precision, engine, torch.compile); naive: every news slot at padded width
    "dedup": ("32-true", "fast", False),
    "bf16": ("bf16-mixed", "fast", False),
    "bf16_compile": ("bf16-mixed", "fast", True),
    "naive": ("32-true", "plain", False),
}


def part_train(args) -> dict:
    import statistics

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    precision, engine, compile_ = TRAIN_MODES[args.mode]
    torch.manual_seed(0)
    cfg = config(args.data, args.data_dir, [f"model.engine={engine}"], args.model)
    dm = datamodule(cfg)
    dm.setup("fit")
    module = _module(cfg, dm).train()
    optimizer = module.configure_optimizers()
    amp = precision == "bf16-mixed"
    loader = iter(dm.train_dataloader())
    slots, unique, real = [], [], []

    def step(batch):
        train_step(module, optimizer, batch, amp)

    start = time.perf_counter()
    if compile_:
        module.recommender.news_encoder.compile(dynamic=True)
        module.recommender.user_encoder.compile(dynamic=True)
    for _ in range(args.warmup):
        step(next(loader))
    warmup_s = time.perf_counter() - start
    batches = [next(loader) for _ in range(args.steps)]
    for b in batches:
        rows = torch.cat([b["history"].ravel(), b["candidates"].ravel()])
        slots.append(len(rows))
        real.append(int((rows != 0).sum()))
        unique.append(len(torch.unique(rows)))
    if compile_:  # shapes vary by batch: let every timed batch's graph exist before timing
        for b in batches:
            step(b)
    # Rounds of the same batches: this shared machine's speed drifts by 10-30% between
    # minutes, so the median round is reported beside the best.
    rounds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for b in batches:
            step(b)
        rounds.append((time.perf_counter() - start) / args.steps)
    with FlopCounterMode(display=False) as counter:
        step(batches[0])
    flops = counter.get_total_flops()
    step_s = statistics.median(rounds)
    peak = matmul_tflops(torch.bfloat16 if amp else torch.float32)
    achieved = flops / step_s / 1e12
    return {
        "mode": args.mode,
        "precision": precision,
        "engine": engine,
        "compile": compile_,
        "samples_per_s": dm.batch_size / step_s,
        "samples_per_s_best": dm.batch_size / min(rounds),
        "step_ms_rounds": [1000 * r for r in rounds],
        "warmup_s": warmup_s,
        "news_slots_per_batch": sum(slots) / len(slots),
        "real_news_slots_per_batch": sum(real) / len(real),
        "distinct_news_per_batch": sum(unique) / len(unique),
        "gflop_per_step_first_batch": flops / 1e9,
        "achieved_tflops": achieved,
        "matmul_peak_tflops": peak,
        "mfu": achieved / peak,
        "peak_gib": peak_rss_gib(),
        "threads": torch.get_num_threads(),
    }


def part_eval(args) -> dict:
    import pytorch_lightning as pl
    import torch

    torch.manual_seed(0)
    # dev: a labeled split on every data config (the synthetic worlds now test on unlabeled test)
    cfg = config(args.data, args.data_dir, ["data.test_split=dev"], args.model)
    dm = datamodule(cfg)
    dm.setup("test")
    module = _module(cfg, dm, ("test",))
    out = {}
    for precision in args.precisions:
        trainer = pl.Trainer(
            accelerator="cpu",
            precision=precision,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        start = time.perf_counter()
        metrics = trainer.test(module, datamodule=dm, verbose=False)[0]
        out[precision] = {"seconds": time.perf_counter() - start, **metrics}
    out["impressions"] = len(dm.data.splits[dm.test_split])
    out["peak_gib"] = peak_rss_gib()
    return out


PARTS = {
    "generate": part_generate,
    "preprocess": part_preprocess,
    "pipeline": part_pipeline,
    "train": part_train,
    "eval": part_eval,
}


def child(part: str, args, *extra: str) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        part,
        "--data",
        args.data,
        "--data-dir",
        args.data_dir,
    ]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    command += ["--rounds", str(args.rounds), "--model", args.model]
    command += ["--precisions", *args.precisions, *extra]
    command += [f"--set={setting}" for setting in args.set]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{part} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def host() -> tuple[str, int, float]:
    """This machine's CPU model name, core count and memory in GiB."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return cpu, os.cpu_count(), memory


def machine() -> str:
    import torch

    cpu, cores, memory = host()
    return f"{cpu}, {cores} cores, {memory:.0f} GiB, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", default="synthetic_small")
    parser.add_argument("--model", default="nrms", help="model preset (conf/model)")
    parser.add_argument(
        "--precisions", nargs="+", default=["32-true", "bf16-mixed"], help="evaluation's"
    )
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--parts", nargs="+", default=["generate", "preprocess", "train", "eval"])
    parser.add_argument("--steps", type=int, default=10, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--modes", nargs="+", default=list(TRAIN_MODES), help="training modes to measure"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument(
        "--set", action="append", default=[], help="a Hydra override for every part (repeatable)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="dedup", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    SETTINGS.extend(args.set)
    if args.child:
        print(json.dumps(PARTS[args.child](args)))
        return

    results: dict = {
        "machine": machine(),
        "date": date.today().isoformat(),
        "data": args.data,
        "model": args.model,
        "settings": args.set,
    }
    if "generate" in args.parts:
        results["generate"] = child("generate", args)
        print("generate", results["generate"], flush=True)
    if "preprocess" in args.parts:
        with tempfile.TemporaryDirectory() as cache:
            cold = child("preprocess", args, "--cache-dir", cache)
            warm = child("preprocess", args, "--cache-dir", cache)
        results["preprocess"] = {"cold": cold, "warm": warm}
        print("preprocess", results["preprocess"], flush=True)
    if "pipeline" in args.parts:
        results["pipeline"] = child("pipeline", args)
        print("pipeline", results["pipeline"], flush=True)
    if "train" in args.parts:
        results["train"] = {}
        for mode in args.modes:
            results["train"][mode] = child("train", args, "--mode", mode)
            print("train", results["train"][mode], flush=True)
    if "eval" in args.parts:
        results["eval"] = child("eval", args)
        print("eval", results["eval"], flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
