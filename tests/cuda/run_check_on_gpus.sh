#!/usr/bin/env bash
# The GPU acceptance run of `dpslice check` (docs/check.md, docs/distributed.md): the battery
# with --device cuda, and the round trip through NCCL at DP 2 and DP 4, on one host.
# Writes under ${OUT:-gpu-results} (at most ten files): run.log (every step's command,
# output, exit status and seconds), versions.txt and one JSON report per step.  Each step's
# exit status is compared with the one expected (0: holds, 1: a counterexample); the script
# exits 1 if any differs.  DP 4 needs 4 GPUs and is reported as not run with fewer; the
# seeded bug then runs at DP 2.
set -uo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
exec > >(tee "$out/run.log") 2>&1
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
status=0

# step NAME EXPECTED_STATUS COMMAND...: run it, time it, compare its exit status.
step() {
    local name=$1 expected=$2
    shift 2
    local began=$EPOCHREALTIME rc seconds
    echo "::: $name: $*"
    "$@"
    rc=$?
    seconds=$(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $began }")
    echo "::: $name: exit $rc (expected $expected) in $seconds s"
    [[ $rc == "$expected" ]] || status=1
}

# Sybil (the docs' snippet runner, which the root conftest loads) from a wheel carried in
# .whl/ where the GPU host has no index to install from.
if compgen -G ".whl/sybil-*.whl" >/dev/null; then "$python" -m pip install -q --no-deps .whl/sybil-*.whl; fi
"$python" -m pip install -q --no-deps --no-build-isolation -e . || exit 1
{
    nvidia-smi --query-gpu=name,driver_version --format=csv
    "$python" -c 'import sys, torch, hypothesis
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| nccl", ".".join(map(str, torch.cuda.nccl.version())), "| hypothesis",
      hypothesis.__version__, "| gpus", torch.cuda.device_count())'
} | tee "$out/versions.txt"
gpus=$("$python" -c 'import torch; print(torch.cuda.device_count())')

dpslice=("$python" -m dpslice check)
step ref_cuda 0 "${dpslice[@]}" --device cuda --max-examples 500 --seed 1 \
    --json "$out/ref_cuda.json"
step tensor_cuda 1 "${dpslice[@]}" dpslice.specimens.tensor_path:tensor_path_slice --device cuda \
    --max-examples 300 --seed 1 --json "$out/tensor_cuda.json"
# The contracts on the GPU: get_dp_local_info where the engine calls it, a capturer slice
# written from the rule, and vLLM's combine on its int32 CPU counts.
step gather_cuda 0 "${dpslice[@]}" dpslice.specimens.upstream:get_dp_local_info_in_graph --device cuda \
    --max-examples 500 --seed 1 --json "$out/gather_cuda.json"
step capturer_cuda 0 "${dpslice[@]}" tests/targets/capturers.py:running_sum --device cuda \
    --max-examples 500 --seed 1 --json "$out/capturer_cuda.json"
step vllm_cuda 0 "${dpslice[@]}" dpslice.specimens.upstream:vllm_combine_slice --device cuda \
    --max-examples 500 --seed 1 --json "$out/vllm_cuda.json"
step nccl_dp2 0 env CUDA_VISIBLE_DEVICES=0,1 "${dpslice[@]}" --distributed 2 --backend nccl \
    --max-examples 500 --seed 1 --run-timeout 300 --json "$out/nccl_dp2.json"
if ((gpus >= 4)); then
    step nccl_dp4 0 "${dpslice[@]}" --distributed 4 --backend nccl --max-examples 500 --seed 1 \
        --run-timeout 300 --json "$out/nccl_dp4.json"
    widest=4
else
    echo "::: DP 4 not run: $gpus GPU(s) visible"
    widest=2
fi
# The seeded off-by-one prefix sum (tests/test_check_seeded_bugs.py), outside the tree,
# at the widest DP size this host allows.
mutant=$(mktemp -d)/reference.py
sed 's/sum(counts\[:slot\])/sum(counts[: slot + 1])/g' dpslice/reference.py >"$mutant"
step "nccl_dp${widest}_off_by_one" 1 "${dpslice[@]}" "$mutant:dp_local_slice" \
    --distributed "$widest" --backend nccl --max-examples 500 --seed 1 --run-timeout 300 \
    --json "$out/nccl_dp${widest}_off_by_one.json"
step pytest_cuda 0 "$python" -m pytest -q -p no:cacheprovider tests/cuda/test_check_cuda.py \
    tests/cuda/test_sync_provenance_cuda.py
exit "$status"
