"""The reference DP-local slice: exact Python ints, explicit errors, no device reads.

At the rank's slot (its rank, or 0 when the gather was skipped): ``start =
sum(counts[:slot])`` eager and in a prefill graph, ``slot * graph_extent`` (rows) in
a decode-graph replay; ``length = counts[slot]``.  A tensor is refused unread.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from dpslice.errors import (
    CountExceedsExtentError,
    CountsLengthError,
    CountsUnavailableError,
    InvalidDPSizeError,
    InvalidGraphExtentError,
    NegativeCountError,
    NonIntegerError,
    RankOutOfRangeError,
    TensorInputError,
)

__all__ = ["DPSlice", "ForwardBatchLike", "dp_local_slice", "get_dp_local_slice_cpu"]


class DPSlice(NamedTuple):
    """A rank's rows in the gathered buffer: ``buffer[start:stop]``."""

    start: int
    length: int

    @property
    def stop(self) -> int:
        return self.start + self.length

    @property
    def slice(self) -> slice:
        """The Python ``slice`` to index the gathered buffer with."""
        return slice(self.start, self.start + self.length)


_PLAIN_SEQUENCES = (list, tuple)
# tuple.__new__ skips the generated NamedTuple constructor: the slice is on the
# engine's hot path, once per forward per capturer.
_NEW_TUPLE = tuple.__new__


class ForwardBatchLike(Protocol):
    """The one field of an engine's forward batch that the slice reads."""

    @property
    def global_num_tokens_cpu(self) -> Sequence[int] | None: ...


def _is_tensor_like(value: object) -> bool:
    # From sys.modules: without torch (or numpy) imported, no value is its tensor.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return True
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray)


def _is_numpy_scalar(value: object, kind: str) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, getattr(numpy, kind))


def _as_int(value: object, what: str) -> int:
    """``value`` as an exact int; numpy integer scalars are accepted."""
    kind = type(value)  # pragma: no mutate: only the shortcut; int(value) below is the same int
    if kind is int:
        return value  # type: ignore[return-value]  # mypy narrows type(value) is int, not kind
    if _is_tensor_like(value):
        raise TensorInputError(
            f"{what} is a {type(value).__module__}.{type(value).__name__}; reading its value "
            "would force a host-device synchronisation (Tensor.__index__ calls item()), which "
            "is the stall the CPU slice exists to avoid. Pass Python ints from the CPU-side "
            "counts (forward_batch.global_num_tokens_cpu) instead"
        )
    if isinstance(value, bool) or _is_numpy_scalar(value, "bool_"):
        raise NonIntegerError(
            f"{what} is the bool {value!r}; pass an int (True would silently count as 1)"
        )
    if isinstance(value, int):
        return int(value)
    if _is_numpy_scalar(value, "integer"):
        return operator.index(value)  # type: ignore[arg-type]
    raise NonIntegerError(
        f"{what} is {value!r} ({type(value).__name__}); token counts, ranks and extents "
        "are exact ints: convert where the value is produced, not by truncating here"
    )


def _as_flag(value: object, what: str) -> bool:
    if type(value) is bool:
        return value
    if _is_tensor_like(value):
        _as_int(value, what)  # raises TensorInputError with the reason
    if _is_numpy_scalar(value, "bool_"):
        return bool(value)
    raise NonIntegerError(f"{what} is {value!r} ({type(value).__name__}); pass a bool")


def _counts_as_ints(counts: object) -> list[int]:
    if counts is None:
        raise CountsUnavailableError(
            "global_num_tokens_cpu is None: the CPU token counts are not populated during "
            "CUDA-graph capture (nor for two-batch-overlap child batches, nor with DP "
            "attention off), so this rank's rows cannot be located from them. During capture "
            "every rank runs the same dummy batch: pass can_run_graph=True with the graph "
            "extent and the dummy counts, or skip the slice while capturing"
        )
    if _is_tensor_like(counts):
        _as_int(counts, "global_num_tokens_cpu")  # raises TensorInputError with the reason
    if isinstance(counts, (str, bytes)) or not isinstance(counts, Sequence):
        raise NonIntegerError(
            f"global_num_tokens_cpu is {type(counts).__name__} {counts!r}; "
            "pass a list of ints, one per DP rank (or one entry if the gather was skipped)"
        )
    ints = [_as_int(count, f"global_num_tokens_cpu[{slot}]") for slot, count in enumerate(counts)]
    for slot, count in enumerate(ints):
        if count < 0:
            raise NegativeCountError(
                f"global_num_tokens_cpu[{slot}] = {count}; a token count cannot be negative. "
                "A negative count usually means a subtraction underflowed upstream"
            )
    return ints


def dp_local_slice(
    global_num_tokens_cpu: Sequence[int] | None,
    dp_rank: int,
    *,
    dp_size: int,
    can_run_graph: bool = False,
    graph_extent: int | None = None,
) -> DPSlice:
    """Locate ``dp_rank``'s rows in the gathered DP buffer.

    Args:
        global_num_tokens_cpu: token counts per DP rank as Python ints (one entry
            if the all-gather was skipped), or ``None`` during capture.
        dp_rank: this rank, in ``range(dp_size)``.
        dp_size: the DP size, the width of the gather.
        can_run_graph: the forward replays a CUDA graph.
        graph_extent: rows each rank owns in a decode graph, ``bs * num_tokens_per_bs``;
            ``None`` in a prefill graph, whose padded counts locate the rank.

    Returns:
        The rank's ``(start, length)`` as exact ints.

    Raises:
        CountsUnavailableError: counts are ``None`` (CUDA-graph capture).
        InvalidGraphExtentError: a negative extent.
        CountExceedsExtentError: a count larger than the extent.
        CountsLengthError: neither one entry nor ``dp_size`` entries.
        RankOutOfRangeError: ``dp_rank`` not in ``range(dp_size)``.
        InvalidDPSizeError: ``dp_size < 1``.
        NegativeCountError: a negative count.
        NonIntegerError: a bool, float, str or other non-integer.
        TensorInputError: a tensor or array where ints are expected.
    """
    counts: Any = global_num_tokens_cpu  # the fast path checks the types itself
    # Fast path for what engines pass (a list of plain ints, int rank and size, a
    # bool flag); any doubt falls through to the validating path, which raises the
    # explicit error.  benchmarks/count_checks.py and call_parts.py time the
    # alternatives: none was faster.
    kind, exact = type, int  # locals: cheaper to load than builtins, in the loops most
    if (
        kind(counts) in _PLAIN_SEQUENCES
        and kind(dp_rank) is exact
        and kind(dp_size) is exact
        and 0 <= dp_rank < dp_size
    ):
        width = len(counts)
        if width == dp_size or width == 1:
            slot = dp_rank if width == dp_size else 0
            if can_run_graph is True and graph_extent is not None:
                # A decode graph: every rank owns `extent` rows.
                extent = graph_extent
                if kind(extent) is exact:
                    for count in counts:
                        if kind(count) is not exact or count < 0 or count > extent:
                            break
                    else:
                        return _NEW_TUPLE(DPSlice, (slot * extent, counts[slot]))
            elif can_run_graph is False or can_run_graph is True:
                # Eager, or a prefill graph (no extent): the running sum.
                for count in counts:
                    if kind(count) is not exact or count < 0:
                        break
                else:
                    return _NEW_TUPLE(DPSlice, (sum(counts[:slot]), counts[slot]))
    return _validated_slice(
        counts, dp_rank, dp_size=dp_size, can_run_graph=can_run_graph, graph_extent=graph_extent
    )


def _validated_slice(
    global_num_tokens_cpu: object,
    dp_rank: object,
    *,
    dp_size: object,
    can_run_graph: object,
    graph_extent: object,
) -> DPSlice:
    """The slice with every argument checked; raises the explicit error for bad input."""
    dp_size = _as_int(dp_size, "dp_size")
    if dp_size < 1:
        raise InvalidDPSizeError(f"dp_size = {dp_size}; the DP size is at least 1")
    dp_rank = _as_int(dp_rank, "dp_rank")
    if not 0 <= dp_rank < dp_size:
        raise RankOutOfRangeError(
            f"dp_rank = {dp_rank} is outside range({dp_size}); pass this process's "
            "attention-DP rank, not its global or TP rank"
        )
    counts = _counts_as_ints(global_num_tokens_cpu)
    if len(counts) == 1:
        slot = 0  # the all-gather was skipped: the one entry is this rank's own
    elif len(counts) == dp_size:
        slot = dp_rank
    else:
        raise CountsLengthError(
            f"global_num_tokens_cpu has {len(counts)} entries for dp_size={dp_size}; it must "
            "hold one count per DP rank, or exactly one (this rank's) when the all-gather "
            "was skipped. Another length means the counts belong to another group"
        )
    length = counts[slot]
    # A graph without a decode extent is a prefill graph: the running sum.
    if not _as_flag(can_run_graph, "can_run_graph") or graph_extent is None:
        return _NEW_TUPLE(DPSlice, (sum(counts[:slot]), length))

    extent = _as_int(graph_extent, "graph_extent")
    if extent < 0:
        raise InvalidGraphExtentError(
            f"graph_extent = {extent}; it is the rows each rank owns in the graph and "
            "cannot be negative"
        )
    for other, count in enumerate(counts):
        if count > extent:
            raise CountExceedsExtentError(
                f"global_num_tokens_cpu[{other}] = {count} exceeds graph_extent = {extent}: "
                "the slice would run into the next rank's rows. Pass the extent in rows "
                "(bs * num_tokens_per_bs, not the request count bs) of the graph that "
                "actually replays this batch"
            )
    return _NEW_TUPLE(DPSlice, (slot * extent, length))


def get_dp_local_slice_cpu(
    forward_batch: ForwardBatchLike,
    can_run_graph: bool,
    cuda_graph_batch: int | None,
    *,
    dp_rank: int,
    dp_size: int,
    num_tokens_per_bs: int = 1,
) -> DPSlice:
    """sglang-shaped entry point to :func:`dp_local_slice`.

    The extent is ``cuda_graph_batch * num_tokens_per_bs``; ``None`` with
    ``can_run_graph`` is a prefill graph.  Rank and DP size are explicit.

    Raises:
        InvalidGraphExtentError: a negative ``cuda_graph_batch``, ``num_tokens_per_bs`` below 1.
        InvalidInputError: any error of :func:`dp_local_slice`.
    """
    rows_per_request = _as_int(num_tokens_per_bs, "num_tokens_per_bs")
    if rows_per_request < 1:
        raise InvalidGraphExtentError(
            f"num_tokens_per_bs = {rows_per_request}; a graph holds at least one row per "
            "request (more under speculative decoding)"
        )
    extent = None
    if cuda_graph_batch is not None:
        batch = _as_int(cuda_graph_batch, "cuda_graph_batch")
        if batch < 0:
            raise InvalidGraphExtentError(
                f"cuda_graph_batch = {batch}; it is the captured graph's batch size and "
                "cannot be negative (pass None for a prefill graph)"
            )
        extent = batch * rows_per_request
    return dp_local_slice(
        forward_batch.global_num_tokens_cpu,
        dp_rank,
        dp_size=dp_size,
        can_run_graph=can_run_graph,
        graph_extent=extent,
    )
