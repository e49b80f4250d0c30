"""The reference against the GPU-tensor path, both on CPU tensors, same layouts.

Each call is one forward's work: locate the rank's rows and slice them out of
the gathered buffer.  The tensor path gets a new forward batch per call, as
an engine makes one per forward, so its cumsum runs every time.  On the CPU
nothing waits for a device: the gap here is pure host overhead (tensor ops and
``item()`` against integer arithmetic); test_bench_gpu.py shows the stall.
"""

from __future__ import annotations

import pytest
import torch
from workloads import PATHS, SlicePaths

from dpslice import DPLayout


@pytest.mark.parametrize("path", PATHS)
def test_slice_rows_cpu(
    benchmark, path: str, slice_case: tuple[DPLayout, int], slice_paths: SlicePaths
) -> None:
    layout, rank = slice_case
    gathered = layout.gathered(rank)
    slice_rows = slice_paths.build(path, layout, rank, gathered)
    mode = "graph" if layout.mode.is_graph else "eager"
    benchmark.group = f"cpu rows {mode} dp{layout.dp_size}"
    benchmark.extra_info.update(path=path, dp_size=layout.dp_size, mode=layout.mode.value)

    rows = benchmark(slice_rows)

    assert torch.equal(rows, layout.expected_rows(rank))
