"""Debug validator: do a rank's CPU counts agree with its GPU counts tensor?

The CPU slice (sglang PR 24550) reads ``global_num_tokens_cpu``; the GPU path
it replaced reads ``global_num_tokens_gpu``.  Review of that PR flagged that
the change silently assumes the two always agree.  This validator checks the
assumption.  It reads the tensor's values, which on CUDA blocks the host until
the GPU drains: call it in debug runs and harnesses, never on a hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dpslice.errors import CountsDisagreementError

if TYPE_CHECKING:
    import torch

__all__ = ["check_counts_consistency", "counts_disagreement"]


def counts_disagreement(
    global_num_tokens_cpu: Sequence[int] | None,
    global_num_tokens_gpu: torch.Tensor,
    *,
    dp_rank: int,
) -> str | None:
    """A report of how the two disagree on rank ``dp_rank``, or ``None`` if they agree.

    ``None`` CPU counts (CUDA-graph capture) have nothing to disagree with.
    Reads the tensor (a host-device sync on CUDA).
    """
    if global_num_tokens_cpu is None:
        return None
    cpu = list(global_num_tokens_cpu)
    gpu = [int(count) for count in global_num_tokens_gpu.reshape(-1).tolist()]
    if cpu == gpu:
        return None
    if len(cpu) != len(gpu):
        detail = f"the CPU list has {len(cpu)} entries, the GPU tensor {len(gpu)}"
    else:
        slots = [slot for slot, (c, g) in enumerate(zip(cpu, gpu, strict=True)) if c != g]
        detail = ", ".join(f"slot {slot}: cpu {cpu[slot]}, gpu {gpu[slot]}" for slot in slots)
    return (
        f"rank {dp_rank}: global_num_tokens_cpu {cpu} disagrees with global_num_tokens_gpu "
        f"{gpu} ({detail}). The CPU slice locates this rank's rows from the list while the "
        "buffer was gathered with the sizes on the device, so it would read another rank's "
        "rows: fill both from the same all-gather, and refresh both when the batch changes"
    )


def check_counts_consistency(
    global_num_tokens_cpu: Sequence[int] | None,
    global_num_tokens_gpu: torch.Tensor,
    *,
    dp_rank: int,
) -> None:
    """Raise if rank ``dp_rank``'s CPU counts disagree with its GPU counts tensor.

    Raises:
        CountsDisagreementError: they disagree; the message names the slots.
    """
    report = counts_disagreement(global_num_tokens_cpu, global_num_tokens_gpu, dp_rank=dp_rank)
    if report is not None:
        raise CountsDisagreementError(report)
