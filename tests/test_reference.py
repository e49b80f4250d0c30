"""Tests of dpslice.reference: the CPU slice, its explicit errors and its refusal of tensors.

Expected slices here are worked out by hand from the engine rules in docs/hazards.md; the
properties that check the reference against the layout model live in
``tests/properties``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import types
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import dpslice.reference
from dpslice import DPSlice, dp_local_slice, get_dp_local_slice_cpu
from dpslice.errors import (
    CountExceedsExtentError,
    CountsLengthError,
    CountsUnavailableError,
    InvalidDPSizeError,
    InvalidGraphExtentError,
    InvalidInputError,
    NegativeCountError,
    NonIntegerError,
    RankOutOfRangeError,
    TensorInputError,
)
from tests.engine import ForwardBatch

# counts, rank, dp_size, can_run_graph, extent, the slice worked out by hand
WORKED_EXAMPLES = [
    pytest.param([2, 0, 3], 0, 3, False, None, (0, 2), id="eager-rank-0"),
    pytest.param([2, 0, 3], 1, 3, False, None, (2, 0), id="eager-empty-rank"),
    pytest.param([2, 0, 3], 2, 3, False, None, (2, 3), id="eager-last-rank"),
    pytest.param((2, 3), 1, 2, False, None, (2, 3), id="eager-counts-a-tuple"),
    pytest.param([3, 3, 3], 2, 3, False, None, (6, 3), id="eager-max-len-padded-list"),
    pytest.param([1, 4], 1, 2, True, 6, (6, 4), id="replay-rank-times-extent"),
    pytest.param([1, 4], 0, 2, True, 6, (0, 1), id="replay-rank-0"),
    pytest.param([4, 2], 1, 2, True, 4, (4, 2), id="replay-count-fills-extent"),
    pytest.param([0, 0], 1, 2, True, 0, (0, 0), id="replay-zero-extent"),
    pytest.param([5], 3, 4, False, None, (0, 5), id="skipped-gather-eager"),
    pytest.param([5], 3, 4, True, 8, (0, 5), id="skipped-gather-replay"),
    pytest.param([7], 0, 1, False, None, (0, 7), id="dp-size-1"),
    pytest.param([2, 3], 1, 2, False, -1, (2, 3), id="eager-ignores-extent"),
    # sglang #30712: a prefill graph has no decode extent; its counts were padded
    # to the bucket, so the running sum is the start.
    pytest.param([8, 8, 8], 2, 3, True, None, (16, 8), id="prefill-graph-running-sum"),
    pytest.param([8], 2, 3, True, None, (0, 8), id="prefill-graph-skipped-gather"),
]
WORKED_FIELDS = ("counts", "rank", "dp_size", "can_run_graph", "extent", "expected")


def _must_not_validate(*args: object, **kwargs: object) -> None:
    raise AssertionError("a call of plain ints left the fast path")


class TestWorkedExamples:
    @pytest.mark.parametrize(WORKED_FIELDS, WORKED_EXAMPLES)
    def test_slice(self, counts, rank, dp_size, can_run_graph, extent, expected):
        assert dp_local_slice(
            counts, rank, dp_size=dp_size, can_run_graph=can_run_graph, graph_extent=extent
        ) == DPSlice(*expected)

    def test_eager_by_default_whatever_the_extent(self):
        # can_run_graph defaults to False: the running sum, not rank * extent.
        assert dp_local_slice([3, 5], 1, dp_size=2, graph_extent=8) == DPSlice(3, 5)

    @pytest.mark.parametrize(WORKED_FIELDS, WORKED_EXAMPLES)
    def test_plain_ints_take_the_fast_path(
        self, monkeypatch, counts, rank, dp_size, can_run_graph, extent, expected
    ):
        """What engines pass never pays for the argument checks: the slice stays sub-us."""
        monkeypatch.setattr(dpslice.reference, "_validated_slice", _must_not_validate)
        assert dp_local_slice(
            counts, rank, dp_size=dp_size, can_run_graph=can_run_graph, graph_extent=extent
        ) == DPSlice(*expected)

    @pytest.mark.parametrize(WORKED_FIELDS, WORKED_EXAMPLES)
    def test_the_validating_path_gives_the_same_slice(
        self, counts, rank, dp_size, can_run_graph, extent, expected
    ):
        """Anything unusual (a numpy count, an int subclass) is sliced by the checked path."""
        assert dpslice.reference._validated_slice(
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

    def test_a_prefill_graph_without_a_decode_extent_takes_the_running_sum(self):
        # sglang #30712: can_run_graph with cuda_graph_batch None is the prefill graph,
        # whose CPU counts the engine padded to the bucket.
        batch = ForwardBatch([4, 4])
        assert get_dp_local_slice_cpu(batch, True, None, dp_rank=1, dp_size=2) == DPSlice(4, 4)

    def test_a_graph_of_batch_size_0_is_accepted(self):
        batch = ForwardBatch([0, 0])
        assert get_dp_local_slice_cpu(batch, True, 0, dp_rank=1, dp_size=2) == DPSlice(0, 0)

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


class _Rank(enum.IntEnum):
    FIRST = 0
    SECOND = 1


class TestIntSubclasses:
    def test_an_int_enum_counts_as_its_value_and_the_bounds_are_plain_ints(self):
        result = dp_local_slice([2, _Rank.SECOND], _Rank.SECOND, dp_size=2)
        assert result == DPSlice(2, 1)
        assert type(result.start) is int
        assert type(result.length) is int


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

    @pytest.mark.parametrize(("flag", "expected"), [(np.True_, (4, 3)), (np.False_, (2, 3))])
    def test_a_numpy_bool_is_a_flag(self, flag, expected):
        assert dp_local_slice([2, 3], 1, dp_size=2, can_run_graph=flag, graph_extent=4) == DPSlice(
            *expected
        )

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


# The messages, word for word: each says what was wrong and what to do, and
# an engine developer reads nothing else when the slice refuses a call.
CAPTURE = (
    "global_num_tokens_cpu is None: the CPU token counts are not populated during "
    "CUDA-graph capture (nor for two-batch-overlap child batches, nor with DP attention "
    "off), so this rank's rows cannot be located from them. During capture every rank "
    "runs the same dummy batch: pass can_run_graph=True with the graph extent and the "
    "dummy counts, or skip the slice while capturing"
)
NEGATIVE_BATCH = (
    "cuda_graph_batch = -1; it is the captured graph's batch size and cannot be negative "
    "(pass None for a prefill graph)"
)
NO_ROWS_PER_REQUEST = (
    "num_tokens_per_bs = 0; a graph holds at least one row per request (more under "
    "speculative decoding)"
)
_AN_ITERATOR = iter([2, 3])


def _negative_extent(extent: int) -> str:
    return (
        f"graph_extent = {extent}; it is the rows each rank owns in the graph and cannot "
        "be negative"
    )


def _over_extent(slot: int, count: int, extent: int) -> str:
    return (
        f"global_num_tokens_cpu[{slot}] = {count} exceeds graph_extent = {extent}: the slice "
        "would run into the next rank's rows. Pass the extent in rows (bs * num_tokens_per_bs, "
        "not the request count bs) of the graph that actually replays this batch"
    )


def _wrong_length(entries: int, dp_size: int) -> str:
    return (
        f"global_num_tokens_cpu has {entries} entries for dp_size={dp_size}; it must hold one "
        "count per DP rank, or exactly one (this rank's) when the all-gather was skipped. "
        "Another length means the counts belong to another group"
    )


def _rank_outside(rank: int, dp_size: int) -> str:
    return (
        f"dp_rank = {rank} is outside range({dp_size}); pass this process's attention-DP "
        "rank, not its global or TP rank"
    )


def _negative_count(slot: int, count: int) -> str:
    return (
        f"global_num_tokens_cpu[{slot}] = {count}; a token count cannot be negative. A "
        "negative count usually means a subtraction underflowed upstream"
    )


def _a_bool(what: str, value: object) -> str:
    return f"{what} is the bool {value!r}; pass an int (True would silently count as 1)"


def _not_an_int(what: str, value: object) -> str:
    return (
        f"{what} is {value!r} ({type(value).__name__}); token counts, ranks and extents are "
        "exact ints: convert where the value is produced, not by truncating here"
    )


def _not_a_list(value: object) -> str:
    return (
        f"global_num_tokens_cpu is {type(value).__name__} {value!r}; pass a list of ints, "
        "one per DP rank (or one entry if the gather was skipped)"
    )


def _not_a_flag(value: object) -> str:
    return f"can_run_graph is {value!r} ({type(value).__name__}); pass a bool"


def _a_tensor(what: str, kind: str) -> str:
    return (
        f"{what} is a {kind}; reading its value would force a host-device synchronisation "
        "(Tensor.__index__ calls item()), which is the stall the CPU slice exists to avoid. "
        "Pass Python ints from the CPU-side counts (forward_batch.global_num_tokens_cpu) instead"
    )


# function, its arguments, the exact error and its exact message
EXPLICIT_ERRORS = [
    # -- capture phase ---------------------------------------------------
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=None),
        CountsUnavailableError,
        CAPTURE,
        id="counts-none-eager",
    ),
    pytest.param(
        dp_local_slice,
        _replay_args(global_num_tokens_cpu=None),
        CountsUnavailableError,
        CAPTURE,
        id="counts-none-graph",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(forward_batch=ForwardBatch(None)),
        CountsUnavailableError,
        CAPTURE,
        id="engine-counts-none",
    ),
    # -- graph extent ----------------------------------------------------
    pytest.param(
        get_dp_local_slice_cpu,
        # Only the product was checked once: -1 * -1 passed as an extent of 1.
        _engine_args(cuda_graph_batch=-1, num_tokens_per_bs=-1),
        InvalidGraphExtentError,
        "num_tokens_per_bs = -1; a graph holds at least one row per request (more under "
        "speculative decoding)",
        id="engine-negative-batch-and-rows-per-request",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(cuda_graph_batch=-1),
        InvalidGraphExtentError,
        NEGATIVE_BATCH,
        id="engine-negative-graph-batch",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(num_tokens_per_bs=0),
        InvalidGraphExtentError,
        NO_ROWS_PER_REQUEST,
        id="engine-zero-rows-per-request",
    ),
    pytest.param(
        dp_local_slice,
        _replay_args(graph_extent=-1),
        InvalidGraphExtentError,
        _negative_extent(-1),
        id="extent-negative",
    ),
    pytest.param(
        dp_local_slice,
        _replay_args(graph_extent=2),
        CountExceedsExtentError,
        _over_extent(1, 3, 2),
        id="count-over-extent",
    ),
    pytest.param(
        dp_local_slice,
        _replay_args(global_num_tokens_cpu=[5], graph_extent=4),
        CountExceedsExtentError,
        _over_extent(0, 5, 4),
        id="one-entry-count-over-extent",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(num_tokens_per_bs=1),
        CountExceedsExtentError,
        _over_extent(1, 3, 2),
        id="engine-request-count-as-extent",
    ),
    # -- shape of the count list, rank and size --------------------------
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[1, 2, 3]),
        CountsLengthError,
        _wrong_length(3, 2),
        id="counts-longer-than-dp-size",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[]),
        CountsLengthError,
        _wrong_length(0, 2),
        id="counts-empty",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_rank=2),
        RankOutOfRangeError,
        _rank_outside(2, 2),
        id="rank-equals-dp-size",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_rank=-1),
        RankOutOfRangeError,
        _rank_outside(-1, 2),
        id="rank-negative",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_size=0, dp_rank=0),
        InvalidDPSizeError,
        "dp_size = 0; the DP size is at least 1",
        id="dp-size-zero",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, -3]),
        NegativeCountError,
        _negative_count(1, -3),
        id="count-negative",
    ),
    # -- not ints --------------------------------------------------------
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, True]),
        NonIntegerError,
        _a_bool("global_num_tokens_cpu[1]", True),
        id="count-bool",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_rank=True),
        NonIntegerError,
        _a_bool("dp_rank", True),
        id="rank-bool",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_size=True, dp_rank=0),
        NonIntegerError,
        _a_bool("dp_size", True),
        id="dp-size-bool",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, 3.0]),
        NonIntegerError,
        _not_an_int("global_num_tokens_cpu[1]", 3.0),
        id="count-float",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, "3"]),
        NonIntegerError,
        _not_an_int("global_num_tokens_cpu[1]", "3"),
        id="count-str",
    ),
    pytest.param(
        dp_local_slice,
        _replay_args(graph_extent=4.0),
        NonIntegerError,
        _not_an_int("graph_extent", 4.0),
        id="extent-float",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu="23"),
        NonIntegerError,
        _not_a_list("23"),
        id="counts-a-str",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=5),
        NonIntegerError,
        _not_a_list(5),
        id="counts-an-int",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=_AN_ITERATOR),
        NonIntegerError,
        _not_a_list(_AN_ITERATOR),
        id="counts-an-iterator",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(can_run_graph=1),
        NonIntegerError,
        _not_a_flag(1),
        id="flag-an-int",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(can_run_graph=None),
        NonIntegerError,
        _not_a_flag(None),
        id="flag-none",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(cuda_graph_batch=2.0),
        NonIntegerError,
        _not_an_int("cuda_graph_batch", 2.0),
        id="engine-cuda-graph-batch-float",
    ),
    pytest.param(
        get_dp_local_slice_cpu,
        _engine_args(num_tokens_per_bs=True),
        NonIntegerError,
        _a_bool("num_tokens_per_bs", True),
        id="engine-num-tokens-per-bs-bool",
    ),
    # -- numpy -----------------------------------------------------------
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=np.array([2, 3])),
        TensorInputError,
        _a_tensor("global_num_tokens_cpu", "numpy.ndarray"),
        id="numpy-array-counts",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, np.array(3)]),
        TensorInputError,
        _a_tensor("global_num_tokens_cpu[1]", "numpy.ndarray"),
        id="numpy-0-dim-array-count",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_rank=np.array(1)),
        TensorInputError,
        _a_tensor("dp_rank", "numpy.ndarray"),
        id="numpy-0-dim-array-rank",
    ),
    # NumPy 1 names the type bool_ and NumPy 2 bool; the message says "bool" in both.
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, np.True_]),
        NonIntegerError,
        _a_bool("global_num_tokens_cpu[1]", np.True_),
        id="numpy-bool-count",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_rank=np.True_),
        NonIntegerError,
        _a_bool("dp_rank", np.True_),
        id="numpy-bool-rank",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=[2, np.float64(3.0)]),
        NonIntegerError,
        _not_an_int("global_num_tokens_cpu[1]", np.float64(3.0)),
        id="numpy-float-count",
    ),
    # -- tensors (each also proven unread in TestTensorsAreNeverRead) ----
    pytest.param(
        dp_local_slice,
        _slice_args(global_num_tokens_cpu=torch.tensor([2, 3])),
        TensorInputError,
        _a_tensor("global_num_tokens_cpu", "torch.Tensor"),
        id="tensor-counts",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(can_run_graph=torch.tensor(True)),
        TensorInputError,
        _a_tensor("can_run_graph", "torch.Tensor"),
        id="tensor-flag",
    ),
    pytest.param(
        dp_local_slice,
        _slice_args(dp_rank=torch.tensor(1)),
        TensorInputError,
        _a_tensor("dp_rank", "torch.Tensor"),
        id="tensor-rank",
    ),
]


class TestExplicitErrors:
    @pytest.mark.parametrize(("function", "kwargs", "error", "message"), EXPLICIT_ERRORS)
    def test_raises_the_exact_error_and_says_what_to_do(self, function, kwargs, error, message):
        with pytest.raises(InvalidInputError) as raised:
            function(**kwargs)
        assert type(raised.value) is error
        assert str(raised.value) == message

    def test_root_error_is_a_value_error(self):
        assert issubclass(InvalidInputError, ValueError)
        with pytest.raises(ValueError, match="dp_size = 0"):
            dp_local_slice([1], 0, dp_size=0)

    # The hierarchy of every error class is tests/test_errors.py's.


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
