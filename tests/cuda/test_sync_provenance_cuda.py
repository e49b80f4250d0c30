"""``sync_free`` gives the same verdict on the CPU (CPU-only mode) and on a GPU (CUDA mode).

CPU-only mode counts only reads of what stands in for device memory (the GPU
count tensor, the gathered buffer); a host-resident count tensor is read for
free on a GPU too.
"""

from __future__ import annotations

import pytest

from dpslice.check import Verdict, run_check

pytestmark = pytest.mark.cuda

DEVICE_COUNTS = "tests/targets/device_counts.py"
SAME_VERDICT = [
    pytest.param("dpslice.reference:dp_local_slice", None, Verdict.PASS, id="reference"),
    pytest.param(
        "dpslice.specimens.tensor_path:tensor_path_slice", None, Verdict.FAIL, id="tensor-path"
    ),
    pytest.param(
        f"{DEVICE_COUNTS}:prefix_of_int32_cpu_counts", None, Verdict.PASS, id="int32-cpu-counts"
    ),
    pytest.param(
        f"{DEVICE_COUNTS}:tensor_bounds_from_device_counts",
        None,
        Verdict.FAIL,
        id="gpu-counts-tensor-bounds",
    ),
    pytest.param(
        f"{DEVICE_COUNTS}:reads_device_counts_on_the_host",
        None,
        Verdict.FAIL,
        id="gpu-counts-read-on-the-host",
    ),
    pytest.param(
        "dpslice.specimens.upstream:get_dp_local_info_in_graph",
        None,
        Verdict.PASS,
        id="gather-on-device",
    ),
]


@pytest.mark.parametrize(("spec", "contract", "verdict"), SAME_VERDICT)
def test_sync_free_is_the_same_on_the_cpu_and_on_the_gpu(spec, contract, verdict) -> None:
    verdicts = {
        device: run_check(
            spec,
            max_examples=100,
            seed=0,
            properties=["sync_free"],
            device=device,
            contract=contract,
        )
        .result("sync_free")
        .verdict
        for device in ("cpu", "cuda")
    }
    assert verdicts == {"cpu": verdict, "cuda": verdict}
