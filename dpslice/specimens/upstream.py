"""Models of the engines' DP-local slices, for ``dpslice check`` to demonstrate on.

Specimens that carry the engines' hazards on purpose, written from the engines'
described behaviour (docs/hazards.md, docs/contracts.md): the engine's arithmetic,
in the check's calling convention.  Each names its call site's contract
(``__dpslice_contract__``).  sglang's capturer slices take ``cuda_graph_batch``,
the request count ``bs``, and validate nothing; the in-graph and vLLM slices are
right where they are called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "dp_slot_in",
    "get_dp_local_info_in_graph",
    "get_dp_local_slice_cpu_as_merged",
    "get_dp_local_slice_cpu_dp_slot_in",
    "vllm_chunked_slice",
    "vllm_combine_slice",
]


def get_dp_local_slice_cpu_as_merged(
    *,
    global_num_tokens_cpu: Sequence[int] | None,
    dp_rank: int,
    can_run_graph: bool,
    cuda_graph_batch: int | None,
) -> tuple[int, int]:
    """sglang PR 24550's ``get_dp_local_slice_cpu``: eager prefix sum, replay ``rank * bs``."""
    # The type checker sees the capture-phase bug: the counts may be None here.
    local_num_tokens = global_num_tokens_cpu[dp_rank]  # type: ignore[index]
    start = (
        dp_rank * cuda_graph_batch  # type: ignore[operator]
        if can_run_graph
        else sum(global_num_tokens_cpu[:dp_rank])  # type: ignore[index]
    )
    return start, local_num_tokens


get_dp_local_slice_cpu_as_merged.__dpslice_contract__ = "sglang-capturer"  # type: ignore[attr-defined]


def dp_slot_in(per_rank: Sequence[int], dp_size: int, dp_rank: int) -> int:
    """This rank's slot in a per-rank list: 0 for a one-entry list, else its rank.

    Raises:
        ValueError: the list is neither one entry nor ``dp_size`` entries.
    """
    if len(per_rank) == 1:
        return 0
    if len(per_rank) != dp_size:
        raise ValueError(
            f"a per-replica sequence of {len(per_rank)} entries does not belong to a DP "
            f"gather of width {dp_size}"
        )
    return dp_rank


def get_dp_local_slice_cpu_dp_slot_in(
    *,
    global_num_tokens_cpu: Sequence[int] | None,
    dp_rank: int,
    dp_size: int,
    can_run_graph: bool,
    cuda_graph_batch: int | None,
) -> tuple[int, int]:
    """The later ``get_dp_local_slice_cpu``: the slot from ``dp_slot_in``, same arithmetic."""
    slot = dp_slot_in(global_num_tokens_cpu, dp_size, dp_rank)  # type: ignore[arg-type]
    return get_dp_local_slice_cpu_as_merged(
        global_num_tokens_cpu=global_num_tokens_cpu,
        dp_rank=slot,
        can_run_graph=can_run_graph,
        cuda_graph_batch=cuda_graph_batch,
    )


get_dp_local_slice_cpu_dp_slot_in.__dpslice_contract__ = "sglang-capturer"  # type: ignore[attr-defined]


def get_dp_local_info_in_graph(
    *, global_num_tokens_gpu: torch.Tensor, dp_rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``get_dp_local_info``: start and length as 0-dim tensors, read on the device."""
    from dpslice._numpy_notice import torch

    ends = torch.cumsum(global_num_tokens_gpu, dim=0)
    length = global_num_tokens_gpu[dp_rank]
    start = ends[dp_rank] - length
    return start, length


get_dp_local_info_in_graph.__dpslice_contract__ = "sglang-gather"  # type: ignore[attr-defined]


def vllm_combine_slice(*, global_num_tokens_cpu: torch.Tensor, dp_rank: int) -> tuple[int, int]:
    """The rank's rows of a combine from vLLM's int32 CPU counts (a host read, never a sync)."""
    from dpslice._numpy_notice import torch

    ends = torch.cumsum(global_num_tokens_cpu, dim=0)  # int64: no int32 wrap
    end = int(ends[dp_rank])
    return end - int(global_num_tokens_cpu[dp_rank]), int(global_num_tokens_cpu[dp_rank])


vllm_combine_slice.__dpslice_contract__ = "vllm-dp"  # type: ignore[attr-defined]


def vllm_chunked_slice(
    *, global_num_tokens_cpu: torch.Tensor, dp_rank: int, chunk_size: int, chunk_index: int
) -> tuple[int, int]:
    """The rank's rows in chunk ``chunk_index`` of DP chunking (at least one: a dummy row)."""
    from dpslice._numpy_notice import torch

    left = global_num_tokens_cpu.to(torch.int64) - chunk_size * chunk_index
    per_rank = left.clamp(min=1, max=chunk_size)
    ends = torch.cumsum(per_rank, dim=0)
    return int(ends[dp_rank] - per_rank[dp_rank]), int(per_rank[dp_rank])


vllm_chunked_slice.__dpslice_contract__ = "vllm-chunked"  # type: ignore[attr-defined]
