"""Host time of one reference slice call on the CPU, eager and graph replay, DP 1, 8, 64.

Targets (docs/benchmarks.md): median <= 1 us per call at DP 8 and <= 3 us at DP 64.
"""

from __future__ import annotations

from collections.abc import Callable

from dpslice import DPLayout, DPSlice


def test_reference_slice(
    benchmark, slice_case: tuple[DPLayout, int], reference_slice: Callable[..., DPSlice]
) -> None:
    layout, rank = slice_case
    call = layout.call(rank)
    benchmark.group = f"cpu slice {'graph' if call.can_run_graph else 'eager'} dp{call.dp_size}"
    benchmark.extra_info.update(path="reference", dp_size=call.dp_size, mode=layout.mode.value)

    result = benchmark(
        reference_slice,
        call.global_num_tokens_cpu,
        call.dp_rank,
        dp_size=call.dp_size,
        can_run_graph=call.can_run_graph,
        graph_extent=call.graph_extent,
    )

    span = layout.span(rank)
    assert (result.start, result.length) == (span.first_row, span.num_rows)
