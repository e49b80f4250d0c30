"""Slice targets whose ``sync_free`` verdict must not depend on the device the check runs on.

Used by tests/test_sync_cpu_mode.py (CPU-only mode with device provenance)
and tests/cuda/test_sync_modes_cuda.py (CUDA mode): each target's verdict is
the same in both.
"""

from __future__ import annotations

import torch


def int32_cpu_count_slice(*, global_num_tokens_cpu: object, dp_rank: int) -> tuple[object, object]:
    """Bounds as 0-dim tensors from an int32 CPU count tensor (vLLM's): host memory, no sync."""
    counts = (
        global_num_tokens_cpu
        if isinstance(global_num_tokens_cpu, torch.Tensor)
        else torch.tensor(global_num_tokens_cpu, dtype=torch.int32)
    )
    ends = torch.cumsum(counts, 0)
    return ends[dp_rank] - counts[dp_rank], counts[dp_rank]


def gpu_count_slice(*, global_num_tokens_gpu: torch.Tensor, dp_rank: int) -> tuple[object, object]:
    """Bounds as 0-dim tensors from the device-side count tensor: reading them syncs."""
    ends = torch.cumsum(global_num_tokens_gpu, 0)
    return ends[dp_rank] - global_num_tokens_gpu[dp_rank], global_num_tokens_gpu[dp_rank]


def cpu_bounds_beside_gpu_counts(
    *, global_num_tokens_cpu: list[int], global_num_tokens_gpu: torch.Tensor, dp_rank: int
) -> tuple[object, object]:
    """Takes the device count tensor but computes its 0-dim bounds from the CPU list: no sync.

    Only its shape is read on the device side (metadata, no sync); the bounds
    are host tensors, so slicing with them reads host memory.
    """
    if global_num_tokens_gpu.shape[0] != len(global_num_tokens_cpu):
        raise ValueError("the CPU and GPU count lists differ in length")
    counts = torch.tensor(global_num_tokens_cpu)
    ends = torch.cumsum(counts, 0)
    return ends[dp_rank] - counts[dp_rank], counts[dp_rank]
