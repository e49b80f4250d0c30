"""CPU-only mode against the guard table, on CPU tensors (no GPU needed).

Every non-syncing operation of the catalogue must stay unflagged (zero false
positives); every sync a CPU run can see must be flagged, bar the one known
miss, and the recall must stay at or above 80%.  With ``device_resident``,
only reads of device memory's stand-ins, and of what derives from them, count.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch

from benchmarks.sync_catalog import OPS, CatalogOp, make_inputs, measure_table, summarise
from dpslice.sync import DeviceResidentSet, find_syncs, no_sync
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


# -- which tensors stand for device memory (device_resident=) -----------------


def gpu_stand_ins() -> tuple[torch.Tensor, torch.Tensor]:
    """A GPU count tensor and a gathered buffer, as CPU tensors standing in for device memory."""
    return torch.tensor([3, 0, 5]), torch.arange(16.0).reshape(8, 2)


#: Ways to derive a tensor from a device-resident one; each result is device-resident too.
DERIVED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "slice": lambda t: t[1:][0],
    "select": lambda t: t[2],
    "view": lambda t: t.view(3, 1)[2, 0],
    "cumsum": lambda t: torch.cumsum(t, 0)[1],
    "scalar_plus_tensor": lambda t: 3 + t[0],
    "sum": lambda t: t.sum(),
    "zeros_like": lambda t: torch.zeros_like(t)[0],
    "cast": lambda t: t.to(torch.int32)[0],
    "dot_data": lambda t: t.data[0],
    "clone_then_in_place": lambda t: t.clone().add_(1)[0],
    "with_a_host_operand": lambda t: t[0] * torch.tensor(2),
}


@pytest.mark.parametrize("derive", DERIVED.values(), ids=list(DERIVED))
def test_a_value_derived_from_device_memory_syncs_when_read(
    derive: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    counts, buffer = gpu_stand_ins()
    events = find_syncs(lambda: int(derive(counts)), mode="cpu", device_resident=(counts, buffer))
    assert [event.op for event in events] == ["Tensor.__int__"]


#: Reads of host data; none would wait for a GPU.
HOST_READS: dict[str, Callable[[torch.Tensor], object]] = {
    "int": lambda host: int(host[1]),
    "item": lambda host: host.sum().item(),
    "tolist": lambda host: host.tolist(),
    "cumsum_bound": lambda host: torch.arange(10)[torch.cumsum(host, 0)[0] : host.sum()],
    "nonzero": lambda host: torch.nonzero(host),
    "bool": lambda host: bool(host.any()),
    "repr": lambda host: repr(host),
    "from_python_data": lambda host: int(torch.tensor([1, 2])[0]),
}


@pytest.mark.parametrize("read", HOST_READS.values(), ids=list(HOST_READS))
def test_reading_a_host_tensor_is_no_sync(read: Callable[[torch.Tensor], object]) -> None:
    counts, buffer = gpu_stand_ins()
    host_counts = torch.tensor([3, 0, 5], dtype=torch.int32)  # vLLM's CPU count tensor
    assert find_syncs(lambda: read(host_counts), mode="cpu", device_resident=(counts, buffer)) == ()
    # Without device_resident every tensor counts, as before.
    assert find_syncs(lambda: read(host_counts), mode="cpu") != ()


def test_the_catalogue_is_judged_alike_when_its_inputs_are_declared_device_resident() -> None:
    """Declared resident: every verdict as without provenance.  Declared host: nothing syncs."""
    inputs = make_inputs("cpu")
    tensors = [value for value in vars(inputs).values() if isinstance(value, torch.Tensor)]
    for op in CPU_OPS:
        run = functools.partial(op.run, inputs)
        everything = bool(find_syncs(run, mode="cpu"))
        resident = bool(find_syncs(run, mode="cpu", device_resident=tensors))
        host = bool(find_syncs(run, mode="cpu", device_resident=()))
        assert (op.name, resident) == (op.name, everything)
        assert (op.name, host) == (op.name, False)


@pytest.mark.parametrize(
    "copy",
    [
        pytest.param(lambda host, t: host.copy_(t), id="copy_"),
        pytest.param(lambda host, t: host.__setitem__(slice(0, 3), t), id="setitem"),
    ],
)
def test_copying_device_memory_into_a_host_tensor_is_the_device_to_host_sync(
    copy: Callable[[torch.Tensor, torch.Tensor], object],
) -> None:
    counts, buffer = gpu_stand_ins()
    resident = DeviceResidentSet([counts, buffer])
    host = torch.zeros(3, dtype=counts.dtype)
    events = find_syncs(lambda: copy(host, counts), mode="cpu", device_resident=resident)
    assert len(events) == 1
    assert "device memory into host memory" in events[0].why
    # The copy is host data now: reading it is free.
    assert find_syncs(lambda: host.tolist(), mode="cpu", device_resident=resident) == ()


def test_a_copy_into_device_memory_keeps_it_device_resident() -> None:
    counts, _ = gpu_stand_ins()
    events = find_syncs(
        lambda: int(counts.copy_(torch.tensor([1, 2, 3]))[0]), mode="cpu", device_resident=[counts]
    )
    assert [event.op for event in events] == ["Tensor.__int__"]


def test_provenance_carries_from_one_guard_to_the_next_through_a_shared_set() -> None:
    """Bounds computed under one guard and used under the next, as a slice check does."""
    counts, buffer = gpu_stand_ins()
    resident = DeviceResidentSet([counts])
    bounds: list[torch.Tensor] = []

    def locate() -> None:
        cumulative = torch.cumsum(counts, 0)
        bounds.extend((cumulative[0], counts[1]))

    assert find_syncs(locate, mode="cpu", device_resident=resident) == ()
    resident.add(buffer)
    start, length = bounds
    events = find_syncs(
        lambda: buffer[start : start + length], mode="cpu", device_resident=resident
    )
    assert [event.op for event in events] == [SLICE_SYNC] * 2


def test_an_int32_cpu_count_tensor_gives_sync_free_bounds() -> None:
    """vLLM's num_tokens_across_dp_cpu: 0-dim CPU tensor bounds read host memory only."""
    counts, buffer = gpu_stand_ins()
    host_counts = torch.tensor([3, 0, 5], dtype=torch.int32)
    resident = DeviceResidentSet([counts, buffer])
    cumulative = torch.cumsum(host_counts, 0)
    start, stop = cumulative[1] - host_counts[1], cumulative[1]
    assert find_syncs(lambda: buffer[start:stop], mode="cpu", device_resident=resident) == ()
    # Provenance flows while a guard holds the set: derive the GPU bound under one.
    events = find_syncs(
        lambda: buffer[torch.cumsum(counts, 0)[0] : stop], mode="cpu", device_resident=resident
    )
    assert [event.op for event in events] == [SLICE_SYNC]


def test_residency_is_weak_and_by_storage() -> None:
    counts, _ = gpu_stand_ins()
    resident = DeviceResidentSet([counts])
    assert counts[1:] in resident  # a view made outside any guard shares the storage
    assert counts.clone() not in resident  # a copy made outside any guard does not
    assert 3 not in resident
    del counts
    assert "0 live tensors" in repr(resident)


def test_device_resident_takes_tensors_only() -> None:
    with pytest.raises(TypeError, match="leave out a None"):
        find_syncs(lambda: None, mode="cpu", device_resident=(torch.zeros(1), None))  # type: ignore[arg-type]


def test_a_gpu_mode_ignores_device_resident() -> None:
    guard = no_sync("probe", device_resident=[torch.zeros(1)])
    assert not hasattr(guard, "device_resident")


#: ``sync_free``'s verdict for each target, the same in CPU-only mode and in CUDA
#: mode (tests/cuda/test_sync_modes_cuda.py holds the GPU side).
SYNC_FREE_VERDICTS = {
    "dpslice.reference:dp_local_slice": "PASS",
    "dpslice.specimens.tensor_path:tensor_path_slice": "FAIL",
    "tests/sync_verdict_targets.py:int32_cpu_count_slice": "PASS",
    "tests/sync_verdict_targets.py:gpu_count_slice": "FAIL",
    "tests/sync_verdict_targets.py:cpu_bounds_beside_gpu_counts": "PASS",
}


@pytest.mark.parametrize(("target", "verdict"), SYNC_FREE_VERDICTS.items())
def test_sync_free_gives_the_gpus_verdict_on_the_cpu(target: str, verdict: str) -> None:
    from dpslice.check import run_check

    result = run_check(target, max_examples=30, seed=0, properties=["sync_free"], device="cpu")
    assert result.results[0].verdict.name == verdict, result.results[0]
