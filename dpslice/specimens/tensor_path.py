"""The GPU-tensor DP-local slice that the reference replaces, kept faithful to upstream.

Before sglang #24550 the routed-experts capturer located a rank's rows with
``get_dp_local_info`` (a ``torch.cumsum`` on the device, start and length cached on
the batch as 0-dim tensors) and sliced with them: every tensor bound is an
``item()``, a ``cudaStreamSynchronize`` on CUDA.  A specimen with its hazards
(numbered as in docs/hazards.md): 1, syncs per bound; 3, ``TypeError`` on
``rank * None``; 4, ``bs`` as the start multiplier; 7, a one-entry count tensor
indexed by the rank; 8, stale cached bounds; 9, an int32 ``cumsum`` that wraps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import torch

    from dpslice.layout import DPLayout

__all__ = [
    "ForwardBatch",
    "capturer_bounds",
    "capturer_slice",
    "get_dp_local_info",
    "tensor_path_slice",
    "upstream_tensor_path_slice",
]


@dataclass(eq=False)
class ForwardBatch:
    """Mutable stand-in for an engine's forward batch: the fields the slice touches.

    The cached bounds are filled by the first :func:`get_dp_local_info` and never
    cleared when the counts are replaced (hazard 8).
    """

    global_num_tokens_gpu: torch.Tensor
    global_num_tokens_cpu: list[int] | None = None
    dp_local_start_pos: torch.Tensor | None = None
    dp_local_num_tokens: torch.Tensor | None = None

    @classmethod
    def from_layout(
        cls,
        layout: DPLayout,
        dp_rank: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> ForwardBatch:
        """The batch rank ``dp_rank`` holds for ``layout``, counts on ``device``."""
        return cls(
            global_num_tokens_gpu=layout.global_num_tokens_gpu(dp_rank, device=device, dtype=dtype),
            global_num_tokens_cpu=layout.global_num_tokens_cpu(dp_rank),
        )

    def set_counts(self, counts_gpu: torch.Tensor, counts_cpu: list[int] | None) -> None:
        """Reuse this object for another forward, leaving the cached bounds (upstream's shape)."""
        self.global_num_tokens_gpu = counts_gpu
        self.global_num_tokens_cpu = counts_cpu


def get_dp_local_info(
    forward_batch: ForwardBatch,
    dp_rank: int,
    *,
    cumsum_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rank's ``(start, length)`` as 0-dim tensors on the counts' device, cached.

    Args:
        forward_batch: the batch; its cache fields are filled on the first call.
        dp_rank: this rank's attention-DP rank (upstream read it from global state).
        cumsum_dtype: passed to ``torch.cumsum``; ``None`` (upstream) promotes
            integer counts to int64, ``torch.int32`` wraps past ``2**31 - 1``.

    Raises:
        IndexError: ``dp_rank`` is past the end of the count tensor, e.g. any
            rank above 0 with a one-entry (skipped all-gather) tensor.
    """
    from dpslice._numpy_notice import torch

    if forward_batch.dp_local_start_pos is None:
        counts = forward_batch.global_num_tokens_gpu
        cumtokens = torch.cumsum(counts, dim=0, dtype=cumsum_dtype)
        start = torch.zeros_like(cumtokens[0]) if dp_rank == 0 else cumtokens[dp_rank - 1]
        forward_batch.dp_local_start_pos = start
        forward_batch.dp_local_num_tokens = counts[dp_rank]
    assert forward_batch.dp_local_num_tokens is not None
    return forward_batch.dp_local_start_pos, forward_batch.dp_local_num_tokens


def capturer_bounds(
    forward_batch: ForwardBatch,
    *,
    dp_rank: int,
    can_run_graph: bool,
    cuda_graph_batch: int | None,
) -> tuple[int | torch.Tensor, torch.Tensor]:
    """The pre-#24550 capturer's ``(start, length)``: no value is read on the host.

    Eager: the cached tensor start; graph replay: ``dp_rank * cuda_graph_batch``.
    """
    start, length = get_dp_local_info(forward_batch, dp_rank)
    if not can_run_graph:
        return start, length
    # cast, not a check: None fails with upstream's incidental TypeError (hazard 3).
    return dp_rank * cast(int, cuda_graph_batch), length


def capturer_slice(
    buffer: torch.Tensor,
    forward_batch: ForwardBatch,
    *,
    dp_rank: int,
    can_run_graph: bool,
    cuda_graph_batch: int | None,
) -> torch.Tensor:
    """Slice the gathered buffer as the pre-#24550 capturer did: a sync per tensor bound."""
    start, length = capturer_bounds(
        forward_batch,
        dp_rank=dp_rank,
        can_run_graph=can_run_graph,
        cuda_graph_batch=cuda_graph_batch,
    )
    stop = start + length
    return buffer[start:stop]  # tensor bounds: the implicit sync, once per bound


def tensor_path_slice(
    *,
    global_num_tokens_gpu: torch.Tensor,
    dp_rank: int,
    can_run_graph: bool = False,
    graph_extent: int | None = None,
) -> tuple[int | torch.Tensor, torch.Tensor]:
    """The tensor path in the ``dpslice check`` calling convention, extent in rows.

    On a fresh :class:`ForwardBatch` and with the extent in rows, where upstream
    handed ``bs``: this isolates what the tensor path itself does from hazard 4.
    """
    batch = ForwardBatch(global_num_tokens_gpu)
    return capturer_bounds(
        batch, dp_rank=dp_rank, can_run_graph=can_run_graph, cuda_graph_batch=graph_extent
    )


def upstream_tensor_path_slice(
    *,
    global_num_tokens_gpu: torch.Tensor,
    dp_rank: int,
    can_run_graph: bool = False,
    cuda_graph_batch: int | None = None,
) -> tuple[int | torch.Tensor, torch.Tensor]:
    """The tensor path handed upstream's ``bs``: wrong under speculative decoding (hazard 4)."""
    batch = ForwardBatch(global_num_tokens_gpu)
    return capturer_bounds(
        batch, dp_rank=dp_rank, can_run_graph=can_run_graph, cuda_graph_batch=cuda_graph_batch
    )
