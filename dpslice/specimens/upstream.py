"""Models of the engines' DP-local slices, for ``dpslice check`` to demonstrate on.

Specimens, not API to call in production: they carry the engines' hazards on
purpose.  Written here from the engines' described behaviour (docs/hazards.md
and docs/contracts.md give the facts and issue numbers), not copied: the
arithmetic is the engine's, the inputs are passed in the check's calling
convention instead of being read from ``forward_batch`` and global state.
Each names the contract of its call site (``__dpslice_contract__``), so
``dpslice check dpslice.specimens.upstream:NAME`` judges it where the engine calls it.

sglang's capturer slice (``sglang-capturer``), both taking
``cuda_graph_batch``, the graph's *request* count ``bs``, as upstream does;
neither handles ``None`` nor validates anything:

* :func:`get_dp_local_slice_cpu_as_merged`: ``get_dp_local_slice_cpu`` as
  merged in sglang PR 24550.
* :func:`get_dp_local_slice_cpu_dp_slot_in`: the later variant that picks the
  rank's entry through ``dp_slot_in`` (a one-entry list is slot 0).

Their hazards: the ``None`` counts of CUDA-graph capture crash with a
``TypeError``, so does a prefill graph's ``None`` ``cuda_graph_batch`` (sglang
#30712), under speculative decoding (``num_tokens_per_bs > 1``) rank r > 0
starts at ``r * bs`` instead of ``r * bs * num_tokens_per_bs`` and reads
another rank's rows, and the version as merged indexes a one-entry (skipped
gather) list by the rank.

And the slices that are right where they are called:

* :func:`get_dp_local_info_in_graph` (``sglang-gather``): the prefix sum over
  the device-side count tensor, bounds as 0-dim tensors that a kernel reads.
* :func:`vllm_combine_slice` (``vllm-dp``): the prefix sum over vLLM's int32
  CPU count tensor, as its all-to-all combine sizes the reduce-scatter.
* :func:`vllm_chunked_slice` (``vllm-chunked``): the same over one chunk of
  DP chunking.
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
    """``get_dp_local_info``: start and length as 0-dim tensors on the counts' device.

    In a decode-graph replay the engine fills the count tensor with every
    rank's block (``bs * num_tokens_per_bs``), so the bounds are the rank's
    whole block; its callers read them on the device, so nothing syncs.
    """
    from dpslice._numpy_notice import torch

    ends = torch.cumsum(global_num_tokens_gpu, dim=0)
    length = global_num_tokens_gpu[dp_rank]
    start = ends[dp_rank] - length
    return start, length


get_dp_local_info_in_graph.__dpslice_contract__ = "sglang-gather"  # type: ignore[attr-defined]


def vllm_combine_slice(*, global_num_tokens_cpu: torch.Tensor, dp_rank: int) -> tuple[int, int]:
    """The rank's rows of a combine: ``cumsum[r - 1]`` to ``cumsum[r]`` of the CPU counts.

    The counts are vLLM's int32 CPU tensor (``num_tokens_across_dp_cpu``):
    reading them is a host read, never a GPU sync.
    """
    from dpslice._numpy_notice import torch

    ends = torch.cumsum(global_num_tokens_cpu, dim=0)  # int64: no int32 wrap
    end = int(ends[dp_rank])
    return end - int(global_num_tokens_cpu[dp_rank]), int(global_num_tokens_cpu[dp_rank])


vllm_combine_slice.__dpslice_contract__ = "vllm-dp"  # type: ignore[attr-defined]


def vllm_chunked_slice(
    *, global_num_tokens_cpu: torch.Tensor, dp_rank: int, chunk_size: int, chunk_index: int
) -> tuple[int, int]:
    """The rank's rows in chunk ``chunk_index`` of DP chunking.

    Chunk ``k`` of a rank with ``n`` tokens holds ``min(chunk_size, n - chunk_size * k)``
    rows, and at least one: a rank that has run out sends a dummy row.
    """
    from dpslice._numpy_notice import torch

    left = global_num_tokens_cpu.to(torch.int64) - chunk_size * chunk_index
    per_rank = left.clamp(min=1, max=chunk_size)
    ends = torch.cumsum(per_rank, dim=0)
    return int(ends[dp_rank] - per_rank[dp_rank]), int(per_rank[dp_rank])


vllm_chunked_slice.__dpslice_contract__ = "vllm-chunked"  # type: ignore[attr-defined]
