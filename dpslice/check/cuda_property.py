"""``cuda_view``: on a GPU, the bounds as returned slice exactly the oracle's view (its
storage, offset, shape and rows).  The comparison works on any device, so it is tested
without a GPU; only its applicability is CUDA's.
"""

from __future__ import annotations

from dpslice._numpy_notice import torch
from dpslice.check.calls import LayoutCall, slice_with
from dpslice.check.draws import COUNTED, RankExample, drawn
from dpslice.check.registry import Counterexample
from dpslice.check.rows import render_rows
from dpslice.check.target import Target

__all__ = ["CUDA_VIEW", "PROPERTIES"]


def _needs_cuda(target: Target) -> str | None:
    if target.device != "cuda":
        return f"it compares CUDA views: run with --device cuda (this run is on {target.device})"
    if not torch.cuda.is_available():
        return "no CUDA device is available here"
    return None


def _first_row(view: torch.Tensor) -> int:
    return view.storage_offset() // view.stride(0)


def _difference(got: torch.Tensor, oracle: torch.Tensor) -> str | None:
    if len(got) == 0 and len(oracle) == 0:
        return None
    if got.untyped_storage().data_ptr() != oracle.untyped_storage().data_ptr():
        return "it is not a view of the gathered buffer's storage"
    if got.storage_offset() != oracle.storage_offset():
        return (
            f"the view starts at storage offset {got.storage_offset()} (row {_first_row(got)}), "
            f"the oracle's at {oracle.storage_offset()} (row {_first_row(oracle)})"
        )
    if got.shape != oracle.shape:
        return f"the view has shape {tuple(got.shape)}, the oracle's {tuple(oracle.shape)}"
    if not torch.equal(got, oracle):
        return "the view holds other rows than the oracle's at the same place"
    return None


def _same_view(target: Target, example: RankExample) -> Counterexample | None:
    layout, rank = example
    called = LayoutCall(target, layout, layout.call(rank))
    if called.outcome.bounds is None:
        return None
    buffer = layout.gathered(rank, device=target.device)
    first, count = called.expected_slice
    oracle = buffer[first : first + count]
    own_rows = called.expected_rows(device=target.device)
    if not torch.equal(oracle, own_rows):
        raise AssertionError(
            f"the layout model disagrees with itself on {layout!r}, rank {rank}: the span's "
            "rows are not expected_rows"
        )
    got = slice_with(buffer, called.outcome.bounds)
    why = _difference(got, oracle)
    if why is None:
        return None
    where = f"buffer[{first}:{first + count}] on {target.device}"
    return called.counterexample(
        f"the view {where}: rows {render_rows(own_rows)}",
        why,
        expected_slice=(first, count),
        got_rows=render_rows(got),
        expected_rows=render_rows(own_rows),
    )


CUDA_VIEW = drawn(
    "cuda_view",
    "On CUDA the bounds, used as returned, slice exactly the oracle's view.",
    _same_view,
    modes=COUNTED,
    requires=_needs_cuda,
)

#: This module's part of the built-in battery, in report order.
PROPERTIES = (CUDA_VIEW,)
