"""Hazard 2 of docs/hazards.md, the GPU side (review of sglang #24550; #26684).

Counts during capture.

During CUDA-graph capture ``global_num_tokens_cpu`` is None.  The reference
refuses explicitly (:class:`~dpslice.errors.CountsUnavailableError`) instead of
failing with upstream's incidental ``TypeError``.  The pre-#24550 GPU path
never read the CPU counts: it reads ``global_num_tokens_gpu``, which capture
does populate with the uniform dummy batch, so it returns bounds, and given
the extent in rows they are the capture buffer's own rows.
"""

from __future__ import annotations

import pytest

from dpslice import DPLayout, dp_local_slice
from dpslice.errors import CountsUnavailableError
from dpslice.specimens.tensor_path import tensor_path_slice

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
CAPTURE = DPLayout.capture(dp_size=4, graph_batch_size=3, num_tokens_per_bs=2)


@pytest.mark.parametrize("rank", range(CAPTURE.dp_size))
def test_reference_refuses_capture_explicitly(rank: int) -> None:
    call = CAPTURE.call(rank)
    assert call.global_num_tokens_cpu is None
    with pytest.raises(CountsUnavailableError, match="CUDA-graph capture"):
        dp_local_slice(
            call.global_num_tokens_cpu,
            rank,
            dp_size=call.dp_size,
            can_run_graph=call.can_run_graph,
            graph_extent=call.graph_extent,
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("can_run_graph", [True, False], ids=["graph-start", "cumsum-start"])
@pytest.mark.parametrize("rank", range(CAPTURE.dp_size))
def test_gpu_path_reads_the_populated_gpu_counts_during_capture(
    device: str, can_run_graph: bool, rank: int
) -> None:
    counts = CAPTURE.global_num_tokens_gpu(rank, device=device)
    assert counts.tolist() == [6, 6, 6, 6]  # the dummy batch: every rank the full extent
    start, length = tensor_path_slice(
        global_num_tokens_gpu=counts,
        dp_rank=rank,
        can_run_graph=can_run_graph,
        graph_extent=CAPTURE.graph_extent,
    )
    span = CAPTURE.span(rank)
    assert (int(start), int(length)) == (span.first_row, span.num_rows)
