"""Slices that read count tensors: host-resident ones, and the device-side one."""

from __future__ import annotations

import torch


def prefix_of_int32_cpu_counts(*, global_num_tokens_cpu, dp_rank):
    """vLLM-style: an int32 CPU count tensor read on the host, int bounds back."""
    ends = torch.cumsum(global_num_tokens_cpu, dim=0)
    own = int(global_num_tokens_cpu[dp_rank])
    return int(ends[dp_rank]) - own, own


prefix_of_int32_cpu_counts.__dpslice_contract__ = "vllm-dp"


def tensor_bounds_from_device_counts(*, global_num_tokens_gpu, dp_rank):
    """0-dim bounds on the counts' device, used by the capturer in a Python slice."""
    ends = torch.cumsum(global_num_tokens_gpu, dim=0)
    length = global_num_tokens_gpu[dp_rank]
    return ends[dp_rank] - length, length


def reads_device_counts_on_the_host(*, global_num_tokens_gpu, dp_rank):
    """Int bounds, but read from the device-side counts: a sync in the call itself."""
    counts = global_num_tokens_gpu.tolist()
    return sum(counts[:dp_rank]), counts[dp_rank]
