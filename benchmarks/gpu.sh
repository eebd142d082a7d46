#!/usr/bin/env bash
# The one-shot GPU check and benchmark: run once by a session with a lent GPU,
# from the repository root, in under 8 minutes and without a network:
#     bash benchmarks/gpu.sh                       # CUDA; -> benchmarks/results_gpu.{json,md}
#     bash benchmarks/gpu.sh --device cpu --tiny   # the CPU rehearsal (tests/test_gpu_script.py)
# Other arguments go to benchmarks/bench_gpu.py (--out, --sections, --data-dir).
# What the GPU machine lacks (hydra-core, omegaconf, antlr4, datasets, ... and
# all-MiniLM-L6-v2's config and tokenizer) travels in .whl/, made here by
# benchmarks/gpu_wheels.sh and carried by the device tool (carry [".whl"]).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}  # the GPU machine's python3 is the one with PyTorch
site=${NEWSREC_GPU_SITE:-/tmp/newsrec-gpu-site}
if compgen -G ".whl/*.whl" >/dev/null && ! "$python" -c "import hydra, omegaconf" 2>/dev/null; then
    # The GPU machine: --no-index --no-deps, nothing is fetched, only the carried wheels
    # are installed (where hydra is there already, as here, nothing is).
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl
    export PYTHONPATH="$site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
exec "$python" benchmarks/bench_gpu.py "$@"
