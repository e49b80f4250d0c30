#!/usr/bin/env bash
# The GPU acceptance run of docs/cuda.md and docs/sync.md, on a machine with one CUDA GPU.
# Writes under ${OUT:-gpu-results}:
#   versions.txt            python, torch, CUDA, hypothesis, GPU name
#   table.md, table.json    the guard table (python benchmarks/sync_catalog.py)
#   pytest.log, junit.xml   the CUDA suite, the GPU-side regressions, the stateful
#                           machine and the sync/plugin tests, with per-test timings
#                           and Hypothesis statistics (examples run per property)
# HYPOTHESIS_PROFILE=ci (derandomized, no example database) unless set;
# DPSLICE_CUDA_EXAMPLES (default 2000) sets the examples per equivalence property.
set -euo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}

"$python" -m pip install -q --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/versions.txt"
"$python" -c 'import sys, torch, hypothesis; print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda, "| hypothesis", hypothesis.__version__, "| gpu", torch.cuda.get_device_name())' \
    | tee -a "$out/versions.txt"

status=0
start=$(date +%s)
"$python" benchmarks/sync_catalog.py --markdown "$out/table.md" --json "$out/table.json" \
    2>&1 | tee "$out/table.log" || status=$?
echo "guard table: $(($(date +%s) - start)) s" | tee -a "$out/versions.txt"

start=$(date +%s)
"$python" -m pytest -p no:cacheprovider -o dpslice_strict_cuda=true \
    --hypothesis-show-statistics --durations=40 -ra --junitxml="$out/junit.xml" \
    tests/cuda tests/test_tensor_path_stateful.py tests/regression/test_gpu_path_sync_24514.py \
    tests/regression/test_gpu_path_capture_counts_26684.py \
    tests/regression/test_gpu_path_stale_bounds.py tests/test_tensor_path.py \
    tests/test_sync_guards.py tests/test_sync_cpu_mode.py tests/test_sync_cuda_mode.py \
    tests/test_pytest_plugin.py tests/test_import_no_cuda.py "$@" \
    2>&1 | tee "$out/pytest.log" || status=$?
echo "pytest: $(($(date +%s) - start)) s" | tee -a "$out/versions.txt"
exit "$status"
