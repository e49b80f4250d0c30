"""Tests of dpslice.reference: the CPU slice, its explicit errors and its refusal of tensors.

Expected slices here are worked out by hand from DOMAIN.md's rules; the
properties that check the reference against the layout model live in
``tests/properties``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import dpslice.errors
from dpslice import (
    CountExceedsExtentError,
    CountsLengthError,
    CountsUnavailableError,
    DPSlice,
    DPSliceError,
    InvalidDPSizeError,
    InvalidGraphExtentError,
    MissingGraphExtentError,
    NegativeCountError,
    NonIntegerError,
    RankOutOfRangeError,
    TensorInputError,
    dp_local_slice,
    get_dp_local_slice_cpu,
)
from tests.engine import ForwardBatch


class TestWorkedExamples:
    @pytest.mark.parametrize(
        ("counts", "rank", "dp_size", "can_run_graph", "extent", "expected"),
        [
            pytest.param([2, 0, 3], 0, 3, False, None, (0, 2), id="eager-rank-0"),
            pytest.param([2, 0, 3], 1, 3, False, None, (2, 0), id="eager-empty-rank"),
            pytest.param([2, 0, 3], 2, 3, False, None, (2, 3), id="eager-last-rank"),
            pytest.param((2, 3), 1, 2, False, None, (2, 3), id="eager-counts-a-tuple"),
            pytest.param([3, 3, 3], 2, 3, False, None, (6, 3), id="eager-max-len-padded-list"),
            pytest.param([1, 4], 1, 2, True, 6, (6, 4), id="replay-rank-times-extent"),
            pytest.param([1, 4], 0, 2, True, 6, (0, 1), id="replay-rank-0"),
            pytest.param([0, 0], 1, 2, True, 0, (0, 0), id="replay-zero-extent"),
            pytest.param([5], 3, 4, False, None, (0, 5), id="skipped-gather-eager"),
            pytest.param([5], 3, 4, True, 8, (0, 5), id="skipped-gather-replay"),
            pytest.param([7], 0, 1, False, None, (0, 7), id="dp-size-1"),
            pytest.param([2, 3], 1, 2, False, -1, (2, 3), id="eager-ignores-extent"),
        ],
    )
    def test_slice(self, counts, rank, dp_size, can_run_graph, extent, expected):
        assert dp_local_slice(
            counts, rank, dp_size=dp_size, can_run_graph=can_run_graph, graph_extent=extent
        ) == DPSlice(*expected)


@dataclasses.dataclass
class _DataclassBatch:
    global_num_tokens_cpu: list[int] | None
    other_field: str = "ignored"


class _PropertyBatch:
    @property
    def global_num_tokens_cpu(self) -> list[int]:
        return [2, 2]


class TestGetDPLocalSliceCPU:
    def test_extent_is_cuda_graph_batch_times_num_tokens_per_bs(self):
        # bs = 2 requests of 3 rows each (speculative verify): rank 1 starts at row 6.
        batch = ForwardBatch([2, 2])
        assert get_dp_local_slice_cpu(
            batch, True, 2, dp_rank=1, dp_size=2, num_tokens_per_bs=3
        ) == DPSlice(6, 2)

    def test_num_tokens_per_bs_defaults_to_1(self):
        batch = ForwardBatch([2, 2])
        assert get_dp_local_slice_cpu(batch, True, 2, dp_rank=1, dp_size=2) == DPSlice(2, 2)

    def test_eager_uses_the_prefix_sum_whatever_cuda_graph_batch_says(self):
        batch = ForwardBatch([2, 3])
        assert get_dp_local_slice_cpu(batch, False, 8, dp_rank=1, dp_size=2) == DPSlice(2, 3)

    @pytest.mark.parametrize(
        "batch",
        [
            pytest.param(types.SimpleNamespace(global_num_tokens_cpu=[2, 2]), id="namespace"),
            pytest.param(_DataclassBatch([2, 2]), id="dataclass"),
            pytest.param(_PropertyBatch(), id="property"),
        ],
    )
    def test_accepts_any_object_with_global_num_tokens_cpu(self, batch):
        assert get_dp_local_slice_cpu(
            batch, True, 4, dp_rank=1, dp_size=2, num_tokens_per_bs=2
        ) == DPSlice(8, 2)


class TestDPSlice:
    def test_is_a_named_tuple_of_start_and_length(self):
        result = dp_local_slice([2, 3], 1, dp_size=2)
        assert isinstance(result, tuple)
        assert result._fields == ("start", "length")
        assert tuple(result) == (2, 3)

    def test_stop_and_slice(self):
        result = dp_local_slice([2, 3, 4], 1, dp_size=3)
        assert result.stop == 5
        assert result.slice == slice(2, 5)
        assert list(range(10)[result.slice]) == [2, 3, 4]

    @pytest.mark.parametrize(
        "kwargs",
        [
            pytest.param({"can_run_graph": False}, id="eager"),
            pytest.param({"can_run_graph": True, "graph_extent": 4}, id="replay"),
        ],
    )
    def test_bounds_are_exact_ints(self, kwargs):
        result = dp_local_slice([np.int64(2), 3], np.int32(1), dp_size=2, **kwargs)
        assert type(result) is DPSlice
        assert [type(bound) for bound in (result.start, result.length, result.stop)] == [int] * 3


class TestNumpyScalars:
    """NumPy integer scalars are accepted as ints (documented in ``_as_int``)."""

    def test_integer_scalars_everywhere(self):
        result = dp_local_slice(
            [np.int64(2), np.uint8(3), np.int32(4)],
            np.int16(2),
            dp_size=np.int64(3),
            can_run_graph=True,
            graph_extent=np.uint32(5),
        )
        assert result == DPSlice(10, 4)
        assert type(result.start) is int
        assert type(result.length) is int

    def test_uint64_beyond_int64_is_exact(self):
        result = dp_local_slice([np.uint64(2**63), 1], 1, dp_size=2)
        assert result == DPSlice(2**63, 1)
        assert type(result.start) is int

    def test_engine_entry_accepts_integer_scalars(self):
        result = get_dp_local_slice_cpu(
            ForwardBatch([np.int64(1), np.int64(2)]),
            True,
            np.int64(2),
            dp_rank=np.int64(1),
            dp_size=np.int64(2),
            num_tokens_per_bs=np.int32(3),
        )
        assert result == DPSlice(6, 2)
        assert type(result.start) is int


def _slice_args(**overrides: object) -> dict[str, object]:
    """Keyword arguments of a valid ``dp_local_slice`` call, with ``overrides`` applied."""
    args: dict[str, object] = {
        "global_num_tokens_cpu": [2, 3],
        "dp_rank": 1,
        "dp_size": 2,
        "can_run_graph": False,
        "graph_extent": None,
    }
    return {**args, **overrides}


def _engine_args(**overrides: object) -> dict[str, object]:
    """Keyword arguments of a valid ``get_dp_local_slice_cpu`` call, with ``overrides`` applied."""
    args: dict[str, object] = {
        "forward_batch": ForwardBatch([2, 3]),
        "can_run_graph": True,
        "cuda_graph_batch": 2,
        "dp_rank": 1,
        "dp_size": 2,
        "num_tokens_per_bs": 2,
    }
    return {**args, **overrides}


def _replay_args(**overrides: object) -> dict[str, object]:
    """Like :func:`_slice_args`, replaying a graph of extent 4."""
    return _slice_args(**{"can_run_graph": True, "graph_extent": 4, **overrides})


# function, its arguments, the exact error, a phrase of the message saying what to do
EXPLICIT_ERRORS = [
    # -- capture phase ---------------------------------------------------
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=None),
        CountsUnavailableError,
        "skip the slice while capturing",
        id="counts-none-eager",
    ),
    pytest.param(
        dp_local_slice,
        _replay_args(global_num_tokens_cpu=None),
        CountsUnavailableError,
        "skip the slice while capturing",
        id="counts-none-graph",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(forward_batch=ForwardBatch(None)),
        CountsUnavailableError,
        "skip the slice while capturing",
        id="engine-counts-none",
    ),
    # -- graph extent ----------------------------------------------------
    pytest.param(
        dp_local_slice,
        _replay_args(graph_extent=None),
        MissingGraphExtentError,
        "pass the graph's padded extent in rows",
        id="graph-without-extent",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(cuda_graph_batch=None),
        MissingGraphExtentError,
        "pass the graph's padded extent in rows",
        id="engine-graph-without-cuda-graph-batch",
    ),
    pytest.param(
        dp_local_slice,
        _replay_args(graph_extent=-1),
        InvalidGraphExtentError,
        "rows each rank owns",
        id="extent-negative",
    ),
    pytest.param(
        dp_local_slice,
        _replay_args(graph_extent=2),
        CountExceedsExtentError,
        "Pass the extent in rows",
        id="count-over-extent",
    ),
    pytest.param(
        dp_local_slice,
        _replay_args(global_num_tokens_cpu=[5], graph_extent=4),
        CountExceedsExtentError,
        "Pass the extent in rows",
        id="one-entry-count-over-extent",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(num_tokens_per_bs=1),
        CountExceedsExtentError,
        "not the request count bs",
        id="engine-request-count-as-extent",
    ),
    # -- shape of the count list, rank and size --------------------------
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[1, 2, 3]),
        CountsLengthError,
        "one count per DP rank",
        id="counts-longer-than-dp-size",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[]),
        CountsLengthError,
        "one count per DP rank",
        id="counts-empty",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_rank=2),
        RankOutOfRangeError,
        "attention-DP rank",
        id="rank-equals-dp-size",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_rank=-1),
        RankOutOfRangeError,
        "attention-DP rank",
        id="rank-negative",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_size=0, dp_rank=0),
        InvalidDPSizeError,
        "at least 1",
        id="dp-size-zero",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, -3]),
        NegativeCountError,
        "subtraction underflowed",
        id="count-negative",
    ),
    # -- not ints --------------------------------------------------------
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, True]),
        NonIntegerError,
        "pass an int",
        id="count-bool",
    ),
    pytest.param(
        dp_local_slice, _slice_args(dp_rank=True), NonIntegerError, "pass an int", id="rank-bool"
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_size=True, dp_rank=0),
        NonIntegerError,
        "pass an int",
        id="dp-size-bool",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, 3.0]),
        NonIntegerError,
        "convert where the value is produced",
        id="count-float",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, "3"]),
        NonIntegerError,
        "convert where the value is produced",
        id="count-str",
    ),
    pytest.param(
        dp_local_slice,
        _replay_args(graph_extent=4.0),
        NonIntegerError,
        "convert where the value is produced",
        id="extent-float",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu="23"),
        NonIntegerError,
        "pass a list of ints",
        id="counts-a-str",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=5),
        NonIntegerError,
        "pass a list of ints",
        id="counts-an-int",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=iter([2, 3])),
        NonIntegerError,
        "pass a list of ints",
        id="counts-an-iterator",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(can_run_graph=1),
        NonIntegerError,
        "pass a bool",
        id="flag-an-int",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(can_run_graph=None),
        NonIntegerError,
        "pass a bool",
        id="flag-none",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(cuda_graph_batch=2.0),
        NonIntegerError,
        "convert where the value is produced",
        id="engine-cuda-graph-batch-float",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(num_tokens_per_bs=True),
        NonIntegerError,
        "pass an int",
        id="engine-num-tokens-per-bs-bool",
    ),
    # -- numpy -----------------------------------------------------------
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=np.array([2, 3])),
        TensorInputError,
        "Pass Python ints",
        id="numpy-array-counts",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, np.array(3)]),
        TensorInputError,
        "Pass Python ints",
        id="numpy-0-dim-array-count",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_rank=np.array(1)),
        TensorInputError,
        "Pass Python ints",
        id="numpy-0-dim-array-rank",
    ),
    # NumPy 1 names the type bool_ and NumPy 2 bool; the message says "bool" in both.
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, np.True_]),
        NonIntegerError,
        "bool",
        id="numpy-bool-count",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_rank=np.True_),
        NonIntegerError,
        "bool",
        id="numpy-bool-rank",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, np.float64(3.0)]),
        NonIntegerError,
        "convert where the value is produced",
        id="numpy-float-count",
    ),
    # -- tensors (each also proven unread in TestTensorsAreNeverRead) ----
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=torch.tensor([2, 3])),
        TensorInputError,
        "Pass Python ints",
        id="tensor-counts",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_rank=torch.tensor(1)),
        TensorInputError,
        "Pass Python ints",
        id="tensor-rank",
    ),
]


class TestExplicitErrors:
    @pytest.mark.parametrize(("function", "kwargs", "error", "hint"), EXPLICIT_ERRORS)
    def test_raises_the_exact_error_and_says_what_to_do(self, function, kwargs, error, hint):
        with pytest.raises(DPSliceError) as raised:
            function(**kwargs)
        assert type(raised.value) is error
        assert hint in str(raised.value)

    def test_root_error_is_a_value_error(self):
        assert issubclass(DPSliceError, ValueError)
        with pytest.raises(ValueError, match="dp_size = 0"):
            dp_local_slice([1], 0, dp_size=0)

    @pytest.mark.parametrize("name", dpslice.errors.__all__)
    def test_every_error_derives_from_the_root(self, name):
        assert issubclass(getattr(dpslice.errors, name), DPSliceError)


# -- tensors are refused unread -----------------------------------------------

#: Tensor methods that read a value back to the host (on CUDA, each one syncs).
#: A TorchDispatchMode misses those that never reach ATen on a CPU tensor
#: (repr, tolist), so they are watched at the torch-function level as well.
READING_METHODS = frozenset(
    {
        "__array__",
        "__bool__",
        "__float__",
        "__format__",
        "__index__",
        "__int__",
        "__repr__",
        "__str__",
        "cpu",
        "item",
        "numpy",
        "tolist",
    }
)


class _LocalScalarReads(TorchDispatchMode):
    """Records every ``aten._local_scalar_dense``: the op behind ``item()`` and ``__index__``."""

    def __init__(self, reads: list[str]) -> None:
        super().__init__()
        self.reads = reads

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


class _ReadingMethodCalls(TorchFunctionMode):
    """Records every call of a :data:`READING_METHODS` method."""

    def __init__(self, reads: list[str]) -> None:
        super().__init__()
        self.reads = reads

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READING_METHODS:
            self.reads.append(f"Tensor.{name}")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def recorded_tensor_reads() -> Iterator[list[str]]:
    """Collect, into the yielded list, every read of a tensor's value inside the block."""
    reads: list[str] = []
    with _ReadingMethodCalls(reads), _LocalScalarReads(reads):
        yield reads


class _EngineTensor(torch.Tensor):
    """A tensor subclass defined outside torch, as engines and tracing tools define them."""


#: Where a tensor can turn up in a call; built outside the recorder so that
#: constructing them is not mistaken for reading them.
TENSOR_POSITIONS = [
    pytest.param(
        dp_local_slice, _slice_args(global_num_tokens_cpu=torch.tensor([2, 3])), id="counts-list"
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, torch.tensor(3)]),
        id="count-element",
    ),
    pytest.param(dp_local_slice, _slice_args(dp_rank=torch.tensor(1)), id="dp-rank"),
    pytest.param(dp_local_slice, _slice_args(dp_size=torch.tensor(2)), id="dp-size"),
    pytest.param(dp_local_slice, _replay_args(graph_extent=torch.tensor(4)), id="graph-extent"),
    pytest.param(dp_local_slice, _slice_args(can_run_graph=torch.tensor(True)), id="can-run-graph"),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, torch.tensor(3, dtype=torch.int32)]),
        id="count-element-int32",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=torch.nn.Parameter(torch.tensor([2.0, 3.0]))),
        id="counts-parameter",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(cuda_graph_batch=torch.tensor(2)),
        id="engine-cuda-graph-batch",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(num_tokens_per_bs=torch.tensor(2)),
        id="engine-num-tokens-per-bs",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(forward_batch=ForwardBatch(torch.tensor([2, 3]))),
        id="engine-counts-tensor",
    ),
]


class TestTensorsAreNeverRead:
    @pytest.mark.parametrize(("function", "kwargs"), TENSOR_POSITIONS)
    def test_tensor_raises_tensor_input_error_unread(self, function, kwargs):
        with recorded_tensor_reads() as reads, pytest.raises(TensorInputError) as raised:
            function(**kwargs)
        assert reads == []
        assert "host-device synchronisation" in str(raised.value)

    @pytest.mark.parametrize(
        "read",
        [
            pytest.param(int, id="int"),
            pytest.param(lambda tensor: tensor.item(), id="item"),
            pytest.param(lambda tensor: range(9)[tensor:], id="slice-bound"),
            pytest.param(lambda tensor: tensor.tolist(), id="tolist"),
            pytest.param(repr, id="repr"),
            pytest.param(lambda tensor: f"{tensor}", id="format"),
        ],
    )
    def test_recorder_sees_each_way_of_reading(self, read):
        """The recorder can fail: every way the slice could read a 0-dim tensor is seen."""
        tensor = torch.tensor(3)
        with recorded_tensor_reads() as reads:
            read(tensor)
        assert reads

    def test_tensor_subclass_from_another_module_is_refused_unread(self):
        rank = torch.tensor(1).as_subclass(_EngineTensor)
        with recorded_tensor_reads() as reads, pytest.raises(TensorInputError):
            dp_local_slice([2, 3], rank, dp_size=2)
        assert reads == []
