"""CPU-only mode against the guard table, on CPU tensors (no GPU needed).

Every non-syncing operation of the catalogue must stay unflagged (zero false
positives); every sync a CPU run can see must be flagged, bar the one known
miss, and the recall must stay at or above 80%.
"""

from __future__ import annotations

import pytest
import torch

from dpslice.sync import find_syncs
from benchmarks.sync_catalog import OPS, CatalogOp, make_inputs, measure_table, summarise
from dpslice.sync.cpu_mode import aten_sync_reason
from tests.torch_releases import SLICE_SYNC

#: Syncs CPU-only mode is known not to see on CPU tensors, and why.
KNOWN_MISSES = {
    "to_cpu": "x.to('cpu') on a CPU tensor is a no-op; flagging it would flag x.to(buf.device)",
}

CPU_OPS = [op for op in OPS if not op.cuda_only]


def flagged_on_cpu(op: CatalogOp) -> bool:
    inputs = make_inputs("cpu")
    return bool(find_syncs(lambda: op.run(inputs), mode="cpu"))


@pytest.mark.parametrize("op", [op for op in CPU_OPS if not op.syncs], ids=lambda op: op.name)
def test_cpu_mode_leaves_a_non_syncing_op_alone(op: CatalogOp) -> None:
    assert not flagged_on_cpu(op), f"{op.code} does not sync on CUDA but CPU-only mode flags it"


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(op, marks=pytest.mark.xfail(reason=KNOWN_MISSES[op.name], strict=True))
        if op.name in KNOWN_MISSES
        else op
        for op in CPU_OPS
        if op.syncs and op.cpu_observable
    ],
    ids=lambda op: op.name,
)
def test_cpu_mode_flags_a_syncing_op_on_cpu_tensors(op: CatalogOp) -> None:
    assert flagged_on_cpu(op), f"{op.code} syncs on CUDA but CPU-only mode misses it"


def test_cpu_mode_recall_and_false_positives_on_cpu_tensors() -> None:
    """The acceptance line of docs/sync.md: >= 80% of visible syncs, no false positive."""
    score = summarise(measure_table(["cpu_on_cpu"]), "cpu_on_cpu")
    assert score["false_positives"] == 0
    assert score["flagged"] >= 0.8 * score["syncing"], score


def test_one_user_call_with_two_tensor_bounds_is_two_syncs() -> None:
    buf, start, stop = torch.arange(10), torch.tensor(2), torch.tensor(5)
    events = find_syncs(lambda: buf[start:stop], mode="cpu")
    assert [event.op for event in events] == [SLICE_SYNC] * 2


def test_item_is_one_sync_though_two_layers_see_it() -> None:
    """The function watch reports it; the dispatch watch must not report it again."""
    events = find_syncs(lambda: torch.tensor(3).item(), mode="cpu")
    assert [event.op for event in events] == ["Tensor.item"]


@pytest.mark.parametrize(
    ("index", "syncs"),
    [
        pytest.param(torch.tensor([True, False, True]), True, id="bool-mask"),
        pytest.param(torch.tensor([1, 0, 1], dtype=torch.uint8), True, id="uint8-mask"),
        pytest.param(torch.tensor([0, 2]), False, id="int64-index"),
    ],
)
def test_index_tensor_is_flagged_only_for_a_mask(index: torch.Tensor, syncs: bool) -> None:
    buf = torch.arange(3)
    reason = aten_sync_reason(torch.ops.aten.index.Tensor, (buf, [index]), {})
    assert (reason is not None) is syncs


def test_repeat_interleave_is_flagged_only_without_output_size() -> None:
    overload = torch.ops.aten.repeat_interleave.Tensor
    repeats = torch.tensor([1, 2])
    assert aten_sync_reason(overload, (repeats,), {}) is not None
    assert aten_sync_reason(overload, (repeats,), {"output_size": 3}) is None


def test_to_cpu_is_flagged_for_a_real_device_to_host_copy_only() -> None:
    from dpslice.sync.cpu_mode import function_sync_reason

    meta = torch.empty(2, device="meta")
    to = torch.Tensor.to
    assert function_sync_reason("Tensor.to", to, (meta, "cpu"), {}) is not None
    assert function_sync_reason("Tensor.to", to, (meta, "cpu"), {"non_blocking": True}) is None
    assert function_sync_reason("Tensor.to", to, (torch.empty(2), "cpu"), {}) is None
    assert function_sync_reason("Tensor.to", to, (meta, torch.float64), {}) is None
