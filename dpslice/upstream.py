"""Models of sglang's CPU slice, for ``dpslice check`` to demonstrate on.

Written here from the described upstream behaviour (see ``DOMAIN.md``), not
copied: the arithmetic is upstream's, the inputs are passed in the check's
calling convention instead of being read from ``forward_batch`` and global
state.  Both take ``cuda_graph_batch``, the graph's *request* count ``bs``, as
upstream does; neither handles ``None`` nor validates anything.

* :func:`get_dp_local_slice_cpu_as_merged`: ``get_dp_local_slice_cpu`` as
  merged in sglang PR 24550.
* :func:`get_dp_local_slice_cpu_dp_slot_in`: the later variant that picks the
  rank's entry through ``dp_slot_in`` (a one-entry list is slot 0).

``dpslice check dpslice.upstream:get_dp_local_slice_cpu_as_merged`` shows the
bugs they carry: the ``None`` counts of CUDA-graph capture crash with a
``TypeError``, so does a ``None`` ``cuda_graph_batch`` (sglang #30712), and
under speculative decoding (``num_tokens_per_bs > 1``) rank r > 0 starts at
``r * bs`` instead of ``r * bs * num_tokens_per_bs`` and reads another rank's rows.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["dp_slot_in", "get_dp_local_slice_cpu_as_merged", "get_dp_local_slice_cpu_dp_slot_in"]


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
