"""What the GPU check (benchmarks/bench_gpu.py) records: the environment, what failed, and
the Markdown table written beside the JSON, ready to paste into benchmarks/RESULTS.md with
the GPU and the date."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch


def environment(device: torch.device, root: Path) -> dict:
    """Versions, the GPU and its bf16 support, and whether newsrec comes from `root`."""
    import newsrec

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "newsrec": str(Path(newsrec.__file__).parent),
        "newsrec_from_this_checkout": Path(newsrec.__file__).is_relative_to(root),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {
            "gpu": props.name,
            "gpu_memory_gib": props.total_memory / 2**30,
            "capability": f"{props.major}.{props.minor}",
            "bf16": torch.cuda.is_bf16_supported(),
        }
    else:
        x = torch.ones(4, 4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            env |= {"gpu": None, "bf16": (x @ x).dtype == torch.bfloat16}
    for name in ("hydra", "omegaconf", "pytorch_lightning", "transformers"):
        try:
            env[name] = __import__(name).__version__
        except ImportError:
            env[name] = None
    return env


def failures_of(results: dict) -> list[str]:
    """What failed: a section that raised (compile included), a preset that failed."""
    failed = [
        f"section {k}: {v['error']}"
        for k, v in results.items()
        if isinstance(v, dict) and "error" in v
    ]
    for preset, r in results.get("smoke", {}).items():
        if isinstance(r, dict) and r.get("status") == "fail":
            failed.append(f"preset {preset}: {r['error']}")
    return failed


def write(path: Path, results: dict, show: bool = True) -> None:
    """The JSON and the Markdown table beside it, each written to a temporary name first."""
    from newsrec.utils.io import write_text

    table = markdown(results)
    write_text(path, json.dumps(results, indent=2, default=str))
    write_text(path.with_suffix(".md"), table)
    if show:
        print("\n" + table + f"\nwritten: {path} and {path.with_suffix('.md')}", flush=True)


def markdown(r: dict) -> str:
    """The figures as a Markdown table, with the GPU and the date, for benchmarks/RESULTS.md.
    The GPU targets (one H100, full sizes) are shown beside full-size figures only."""
    env = r.get("env", {})
    gpu = env.get("gpu")
    title = f"## GPU check (benchmarks/gpu.sh), {gpu or 'CPU rehearsal'}, {r['date']}, "
    title += f"torch {env.get('torch')}" + (f", CUDA {env['cuda']}" if env.get("cuda") else "")
    title += ", --tiny" * r["tiny"]
    memory = "GPU memory" if gpu else "RSS"  # CPU: the process's peak, never reset
    rows = []

    def add(what: str, figure: str, target: str = "") -> None:
        rows.append(f"| {what} | {figure} | {'' if r['tiny'] else target} |")

    if "preprocess_s" in r.get("data", {}):
        d = r["data"]
        add(
            f"{d['data']}: generation, preprocessing",
            f"{d['generate_s']:.1f} s, {d['preprocess_s']:.1f} s",
        )
    smoke = {k: v for k, v in r.get("smoke", {}).items() if isinstance(v, dict)}
    if smoke:
        passed = sum(v.get("status") == "pass" for v in smoke.values())
        others = "".join(
            f"; {k} {v['status']}" for k, v in smoke.items() if v.get("status") != "pass"
        )
        add("smoke test, bf16-mixed (every preset)", f"{passed}/{len(smoke)} pass{others}")
    train = r.get("train", {})
    for t, label, target in (
        (train.get("fp32", {}), "float32", ""),
        (train.get("bf16", {}), "bf16-mixed", "epoch <= 60 s"),
        (r.get("compile", {}), "bf16 + compile", ""),
    ):
        if "samples_per_s" in t:
            figure = (
                f"{t['samples_per_s']:,.0f} samples/s, peak {memory} {t['peak_gib']:.2f} GiB, "
                f"MIND-small epoch {t['mind_small_epoch_s']:.0f} s, warm-up {t['warmup_s']:.1f} s"
            )
            add(f"NRMS training, {label}", figure, target)
        elif "error" in t:
            add(f"NRMS training, {label}", f"FAILED: {t['error'][:200]}")
    if "loader_samples_per_s" in train:
        add("training loader alone", f"{train['loader_samples_per_s']:,.0f} samples/s")
    for precision in ("32-true", "bf16-mixed"):
        if precision in r.get("eval", {}):
            e, n = r["eval"][precision], r["eval"]["impressions"]
            figure = f"{e['seconds']:.2f} s, peak {memory} {e['peak_gib']:.2f} GiB"
            target = "<= 5 s" if precision == "bf16-mixed" else ""
            add(f"dev evaluation ({n:,} impressions), {precision}", figure, target)
    for precision in ("32-true", "bf16-mixed"):
        if precision in r.get("encode", {}):
            e, n = r["encode"][precision], r["encode"]["news"]
            bf16 = precision == "bf16-mixed"
            add(
                f"encode {n:,} news, {precision}",
                f"{e['news_s']:.2f} s",
                "<= 2 s (paper, Table 3: 39.7 s)" * bf16,
            )
            add(
                f"encode {n:,} users (50 clicks), {precision}",
                f"{e['users_s']:.2f} s",
                "<= 10 s (paper, Table 3: 6.7 min)" * bf16,
            )
    p = r.get("plm", {})
    if "status" in p:
        add("nrms_plm", p["status"])
    for mode, label in (("frozen", "frozen (train_layers=0)"), ("top2", "top 2 layers trained")):
        if mode in p:
            t = p[mode]
            add(
                f"nrms_plm training, bf16, {label}",
                f"{t['samples_per_s']:,.0f} samples/s, peak {memory} {t['peak_gib']:.2f} GiB",
            )
    for precision in ("32-true", "bf16-mixed"):
        if precision in p.get("eval", {}):
            add(f"nrms_plm dev evaluation, {precision}", f"{p['eval'][precision]['seconds']:.2f} s")
    for failure in r.get("failures", []):
        add("**FAILED**", failure[:300].replace("|", "/").replace("\n", " "))
    head = "| what | figure | target (one H100) |\n|---|---|---|"
    return "\n".join([title, "", head, *rows, ""])
