"""benchmarks/gpu.sh, the one-shot GPU check, rehearsed on CPU (`--device cpu --tiny`): the
code path a session with a lent GPU runs once, so that it cannot rot between such sessions.
Every preset must pass its smoke test and every section give positive figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from newsrec.config import model_presets

ROOT = Path(__file__).resolve().parents[1]
PRESETS = model_presets()


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    tmp = tmp_path_factory.mktemp("gpu")
    out = tmp / "results_gpu.json"
    env = {**os.environ, "PYTHON": sys.executable, "NEWSREC_GPU_SITE": str(tmp / "site")}
    env["HF_HUB_OFFLINE"] = "1"  # never the network, whatever the script does
    command = ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--device", "cpu", "--tiny"]
    command += ["--out", str(out), "--data-dir", str(tmp / "data")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    return done, out


@pytest.mark.slow
def test_every_preset_passes_the_smoke_test(rehearsal):
    done, out = rehearsal
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    results = json.loads(out.read_text())
    assert results["failures"] == []
    smoke = {k: v for k, v in results["smoke"].items() if k != "section_s"}
    assert sorted(smoke) == PRESETS
    plm = "pass" if results["env"]["transformers"] else "skipped"
    for name, r in smoke.items():
        assert r["status"].startswith(plm if name == "nrms_plm" else "pass"), (name, r)
        if r["status"] == "pass":
            assert 0.0 <= r["test_auc"] <= 1.0


@pytest.mark.slow
def test_every_section_gives_positive_figures(rehearsal):
    done, out = rehearsal
    r = json.loads(out.read_text())
    env = r["env"]
    assert env["device"] == "cpu" and env["newsrec_from_this_checkout"] and env["bf16"]
    assert r["data"]["news"] > 0 and r["data"]["preprocess_s"] > 0
    assert r["train"]["loader_samples_per_s"] > 0
    for t in (r["train"]["fp32"], r["train"]["bf16"], r["compile"]):
        assert t["samples_per_s"] > 0 and t["peak_gib"] > 0 and t["mind_small_epoch_s"] > 0
    for precision in ("32-true", "bf16-mixed"):
        assert r["eval"][precision]["seconds"] > 0 and 0 <= r["eval"][precision]["auc"] <= 1
        assert r["encode"][precision]["news_s"] > 0 and r["encode"][precision]["users_s"] > 0
    assert r["eval"]["impressions"] > 0 and r["encode"]["news"] == 1_000
    if env["transformers"]:
        for mode in ("frozen", "top2"):
            assert r["plm"][mode]["samples_per_s"] > 0
        assert r["plm"]["eval"]["bf16-mixed"]["seconds"] > 0
    table = out.with_suffix(".md").read_text()
    assert "CPU rehearsal" in table and r["date"] in table
    assert "NRMS training, bf16 + compile" in table and "**FAILED**" not in table


def test_a_failing_preset_fails_the_script_loudly_after_the_figures():
    """A GPU session must see a failure in the exit status, with the figures still written."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_report import failures_of, markdown

    results = {
        "date": "2026-11-28 07:00 UTC",
        "tiny": True,
        "env": {"gpu": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "cuda": "13.0"},
        "smoke": {"nrms": {"status": "pass"}, "dkn": {"status": "fail", "error": "boom"}},
        "encode": {"error": "RuntimeError: CUDA out of memory"},
        "compile": {"error": "recompile_limit"},
    }
    failed = failures_of(results)
    assert failed == [
        "section encode: RuntimeError: CUDA out of memory",
        "section compile: recompile_limit",
        "preset dkn: boom",
    ]
    table = markdown({**results, "failures": failed})
    assert "NVIDIA H100 80GB HBM3" in table and "1/2 pass; dkn fail" in table
    assert table.count("**FAILED**") == 3 and "bf16 + compile | FAILED: recompile_limit" in table
