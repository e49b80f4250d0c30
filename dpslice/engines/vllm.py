"""The installed vLLM's own DP-local slice code, in ``dpslice check``'s calling convention.

``restore_local_topk_ids`` (``vllm-dp``) runs vLLM's capturer method on a bufferless
instance with a real ``DPMetadata``, the gathered ids on the meta device: the view it
returns gives the slice by its offset and length (docs/engines.md).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from types import ModuleType, SimpleNamespace
from typing import Any

from dpslice._numpy_notice import torch
from dpslice.engines import import_engine_module

__all__ = ["INSTALL_HINT", "RELEASE", "restore_local_topk_ids"]

#: How to get a vLLM these adapters can import (docs/engines.md, "vLLM").
INSTALL_HINT = (
    "pip install --no-deps vllm==0.33.0 into an environment with torch==2.13.0 and "
    "vLLM's import-time packages (docs/engines.md lists them)"
)


def _import(name: str) -> ModuleType:
    return import_engine_module(
        name,
        engine="vllm",
        absent=f"dpslice.engines.vllm needs vLLM, which is not installed; {INSTALL_HINT}",
        missing=lambda package: (
            f"vLLM is installed but importing {name} needs {package!r}, which is missing; "
            f"{INSTALL_HINT}"
        ),
    )


_forward_context: Any = _import("vllm.forward_context")
_capturer_module: Any = _import("vllm.model_executor.layers.fused_moe.routed_experts_capturer")

#: The installed vLLM release, as its package metadata says.
RELEASE: str = importlib.metadata.version("vllm")


def restore_local_topk_ids(*, global_num_tokens_cpu: Any, dp_rank: Any) -> Any:
    """vLLM's capturer: which rows of the DP-gathered top-k ids are ``dp_rank``'s."""
    counts = global_num_tokens_cpu
    capturer = object.__new__(_capturer_module.RoutedExpertsCapturer)
    capturer.dp_rank = dp_rank
    capturer.tp_size = 1
    context = SimpleNamespace(
        dp_metadata=_forward_context.DPMetadata(counts), batch_descriptor=None
    )
    # One row per gathered token, as vLLM's combine hands the capturer; on the meta
    # device, so counts near 2**31 allocate nothing, while a view still keeps its offset.
    # A negative count (an input vLLM never builds) leaves the judgement to vLLM's code.
    rows_gathered = max(int(torch.as_tensor(counts).sum()), 0)
    gathered = torch.empty(rows_gathered, dtype=torch.int32, device="meta")
    rows = capturer._restore_local_topk_ids(gathered, context)
    return rows.storage_offset(), rows.shape[0]


restore_local_topk_ids.__signature__ = inspect.signature(restore_local_topk_ids)  # type: ignore[attr-defined]
restore_local_topk_ids.__wrapped__ = (  # type: ignore[attr-defined]
    _capturer_module.RoutedExpertsCapturer._restore_local_topk_ids
)
restore_local_topk_ids.__dpslice_contract__ = "vllm-dp"  # type: ignore[attr-defined]
