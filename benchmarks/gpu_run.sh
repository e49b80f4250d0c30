#!/usr/bin/env bash
# One run of every benchmark on a machine with a CUDA GPU (the CPU ones too, so
# both sit in one JSON from one machine), then the GPU ones again, compared
# with the first, to show run-to-run spread.  Writes under ${OUT:-benchmark-results}:
#   storage/<machine>/0001_gpu.json         the full run (machine_info: GPU, torch, CUDA)
#   storage/<machine>/0002_gpu-repeat.json  the GPU benchmarks again
#   log, log-repeat                         the runs' output
#   nvidia-smi.csv, versions.txt            the card as found, and the versions
#   floor.txt                               the reference / bare ratios (benchmarks/floor.py)
# Saved runs hold statistics, not every round (the CPU ones run 10^5 rounds).
# Then, wherever matplotlib is installed:
#   python benchmarks/plot.py .../0001_gpu.json   # docs/img/host_time_vs_queue.png + ratios
set -euo pipefail
out=${OUT:-benchmark-results}
mkdir -p "$out"
python=${PYTHON:-python3}

# Test tools missing from the image can travel as wheels in .whl/ (see docs/benchmarks.md).
if ! "$python" -c 'import pytest, pytest_benchmark, hypothesis' 2>/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/bench-site .whl/*.whl
    export PYTHONPATH=/tmp/bench-site${PYTHONPATH:+:$PYTHONPATH}
fi
"$python" -m pip install -q --no-deps --no-build-isolation -e .

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,persistence_mode \
    --format=csv | tee "$out/nvidia-smi.csv"
"$python" -c 'import sys, torch, pytest_benchmark, hypothesis; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "pytest-benchmark", pytest_benchmark.__version__, "hypothesis", hypothesis.__version__, "gpu", torch.cuda.get_device_name())' \
    | tee "$out/versions.txt"

export PYTHONUNBUFFERED=1
storage=(--benchmark-storage="file://$(cd "$out" && pwd)/storage")
# Only benchmarks/conftest.py: the root one loads the docs' test runner (Sybil),
# which the benchmarks do not need and a GPU image may lack.
conftest=(--confcutdir=benchmarks)
columns=(--benchmark-columns=min,median,iqr,rounds --benchmark-sort=fullname)
status=0
"$python" -m pytest benchmarks -p no:cacheprovider "${conftest[@]}" "${storage[@]}" --benchmark-save=gpu \
    "${columns[@]}" "$@" 2>&1 | tee "$out/log" || status=$?
"$python" -m pytest benchmarks -m cuda -p no:cacheprovider "${conftest[@]}" "${storage[@]}" \
    --benchmark-save=gpu-repeat --benchmark-compare=0001 --benchmark-group-by=fullname \
    "${columns[@]}" 2>&1 | tee "$out/log-repeat" || status=$?
for run in "$out"/storage/*/0001_gpu.json "$out"/storage/*/0002_gpu-repeat.json; do
    if [ -f "$run" ]; then
        "$python" benchmarks/floor.py "$run" 2>&1 | tee -a "$out/floor.txt" || status=$?
    fi
done
exit "$status"
