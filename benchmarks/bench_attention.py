"""Attention on CPU: the keys-first plain products against torch's fused kernel, per shape.

    python benchmarks/bench_attention.py          # -> benchmarks/results_attention.json

`newsrec.models.engine.kernels.attention` picks between the two by these figures. The
shapes are the ones newsrec runs: NRMS titles in training (groups of 256 rows, 16 x 16
heads, up to 30 words, with gradients), user histories in training (batch 64, 50 news) and
an evaluation batch's distinct histories (~300 of them, 20 x 20 heads for GloVe NRMS's
400-d news, no gradients), in float32 and bf16. Each figure is the median of `--repeat`
timings (milliseconds, forward, plus backward where there are gradients).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import machine  # noqa: E402  (benchmarks/bench.py)

from newsrec.models.engine.kernels import (  # noqa: E402
    attention,
    fused_attention,
    keys_first_attention,
)

CASES = [  # (what, rows, heads, head_dim, gradients, dtype, lengths)
    ("titles, training", 256, 16, 16, True, torch.float32, (12, 20, 24, 28)),
    ("histories, training", 64, 16, 16, True, torch.float32, (16, 24, 32, 40, 50)),
    ("histories, training, bf16", 64, 16, 16, True, torch.bfloat16, (16, 32, 50)),
    ("histories, evaluation", 300, 20, 20, False, torch.float32, (8, 16, 24, 32, 50)),
]
KERNELS = {"keys_first": keys_first_attention, "fused": fused_attention, "cpu": attention}


def time_kernel(kernel, qkv, mask, heads, head_dim, grad: bool, repeat: int) -> float:
    def run() -> None:
        if grad:
            x = qkv.detach().requires_grad_()
            kernel(x, mask, heads, head_dim).float().sum().backward()
        else:
            with torch.no_grad():
                kernel(qkv, mask, heads, head_dim)

    for _ in range(3):
        run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_attention.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for what, b, heads, head_dim, grad, dtype, lengths in CASES:
        for length in lengths:
            qkv = torch.randn(b, length, 3 * heads * head_dim, dtype=dtype)
            real = torch.randint(1, length + 1, (b,))
            mask = torch.arange(length)[None, :] < real[:, None]
            ms = {
                name: time_kernel(kernel, qkv, mask, heads, head_dim, grad, args.repeat)
                for name, kernel in KERNELS.items()
            }
            rows.append({"case": what, "rows": b, "length": length, **ms})
            print(
                f"{what:28s} L={length:2d}: keys-first {ms['keys_first']:7.2f} ms, fused "
                f"{ms['fused']:7.2f} ms, attention {ms['cpu']:7.2f} ms",
                flush=True,
            )
    result = {"machine": machine(), "date": date.today().isoformat(), "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
