"""The reference against the GPU-tensor path, both on CPU tensors, same layouts.

Each call is one forward's work: locate the rank's rows and slice them out of
the gathered buffer.  The tensor path gets a new forward batch per call, as
an engine makes one per forward, so its cumsum runs every time.  On the CPU
nothing waits for a device: the gap here is pure host overhead (tensor ops and
``item()`` against integer arithmetic); test_bench_gpu.py shows the stall.

``test_reference_vs_bare_cpu`` is the CPU side of test_bench_gpu.py's floor:
the reference + slice against the same slice of precomputed ints (``bare``),
against the reference's arithmetic inline without its checks (``unchecked``)
and against that arithmetic returned by a call of the reference's signature
that checks nothing (``no_checks``).  ``python benchmarks/floor.py RESULTS.json`` prints the ratios.
"""

from __future__ import annotations

import pytest
import torch
from layouts import bench_layout
from workloads import FLOOR_DP_SIZES, FLOOR_MODES, FLOOR_PATHS, PATHS, SlicePaths

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


@pytest.mark.parametrize("mode", FLOOR_MODES)
@pytest.mark.parametrize("dp_size", FLOOR_DP_SIZES, ids=lambda dp_size: f"dp{dp_size}")
@pytest.mark.parametrize("path", FLOOR_PATHS)
def test_reference_vs_bare_cpu(
    benchmark, path: str, dp_size: int, mode: str, slice_paths: SlicePaths
) -> None:
    layout, rank = bench_layout(dp_size, FLOOR_MODES[mode]), dp_size - 1
    gathered = layout.gathered(rank)
    slice_rows = slice_paths.build(path, layout, rank, gathered)
    benchmark.group = f"cpu floor {mode} dp{dp_size}"
    benchmark.extra_info.update(path=path, dp_size=dp_size, dp_rank=rank, mode=mode)

    rows = benchmark(slice_rows)

    assert torch.equal(rows, layout.expected_rows(rank))
