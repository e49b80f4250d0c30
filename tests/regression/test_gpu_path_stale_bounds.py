"""Hazard 8 of docs/hazards.md: the GPU path caches its bounds on the batch object.

An inference from the code.

``get_dp_local_info`` fills ``dp_local_start_pos`` / ``dp_local_num_tokens``
the first time it sees a batch object and never again.  An engine that
reuses the object for another forward with new counts slices the old rows.
tests/test_tensor_path_stateful.py finds this from random step sequences;
this is the smallest such sequence, written out.
"""

from __future__ import annotations

import pytest
import torch

from dpslice import DPLayout, Mode, dp_local_slice
from dpslice.specimens.tensor_path import ForwardBatch, capturer_slice

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("device", DEVICES)
def test_reused_batch_object_slices_the_previous_forwards_rows(device: str) -> None:
    first, second = DPLayout((3, 5, 2)), DPLayout((6, 1, 4))
    batch = ForwardBatch.from_layout(first, 1, device=device)
    capturer_slice(first.gathered(1, device=device), batch, dp_rank=1, can_run_graph=False,
                   cuda_graph_batch=None)  # fmt: skip
    fresh = ForwardBatch.from_layout(second, 1, device=device)
    batch.set_counts(fresh.global_num_tokens_gpu, fresh.global_num_tokens_cpu)

    rows = capturer_slice(
        second.gathered(1, device=device), batch, dp_rank=1, can_run_graph=False,
        cuda_graph_batch=None,
    )  # fmt: skip
    assert rows.shape[0] == 5  # the first forward's count, not 1
    assert not torch.equal(rows, second.expected_rows(1, device=device))

    call = second.call(1)
    found = dp_local_slice(call.global_num_tokens_cpu, 1, dp_size=call.dp_size)
    assert torch.equal(second.gathered(1, device=device)[found.slice],
                       second.expected_rows(1, device=device))  # fmt: skip


@pytest.mark.parametrize("device", DEVICES)
def test_stale_length_survives_into_graph_replay(device: str) -> None:
    """Replay recomputes the int start but keeps the cached tensor length."""
    eager = DPLayout((3, 5, 2))
    replay = DPLayout((2, 2, 2), Mode.GRAPH_REPLAY, graph_batch_size=4)
    batch = ForwardBatch.from_layout(eager, 1, device=device)
    capturer_slice(eager.gathered(1, device=device), batch, dp_rank=1, can_run_graph=False,
                   cuda_graph_batch=None)  # fmt: skip
    fresh = ForwardBatch.from_layout(replay, 1, device=device)
    batch.set_counts(fresh.global_num_tokens_gpu, fresh.global_num_tokens_cpu)
    rows = capturer_slice(replay.gathered(1, device=device), batch, dp_rank=1,
                          can_run_graph=True, cuda_graph_batch=4)  # fmt: skip
    assert rows.shape[0] == 5  # ran past rank 1's extent of 4 into rank 2's rows
    assert rows[-1, 0].item() == 2
