"""Ground truth: what one forward's gathered DP buffer really looks like.

A :class:`DPLayout` describes the per-rank token counts and how the engine
gathered them (SUM_LEN, MAX_LEN, CUDA-graph replay or capture, attention-TP
rounding, a skipped all-gather).  From that description it derives

* what the engine hands the slicer for a rank (:meth:`DPLayout.call`), and
* the gathered buffer itself (:meth:`DPLayout.gathered`), built by
  concatenating every rank's contribution with its padding, whose rows are
  tagged ``(rank, local_row)``, padding rows ``(rank, PAD_ROW)``.

The buffer is the oracle.  It is assembled piece by piece and never asks the
slice formula under test where a rank starts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from dpslice.errors import InvalidLayoutError

if TYPE_CHECKING:
    import torch

__all__ = ["PAD_ROW", "DPLayout", "Mode", "RowSpan", "SliceCall"]

#: ``local_row`` tag of a padding row (attention-TP rounding, MAX_LEN, graph extent).
PAD_ROW = -1

#: Largest buffer :meth:`DPLayout.gathered` builds unless told otherwise.
DEFAULT_MAX_ROWS = 1 << 20


class Mode(enum.Enum):
    """How the engine laid the ranks out in the gathered buffer."""

    #: Eager; ranks packed back to back (any extend with more than one rank).
    SUM_LEN = "sum_len"
    #: Eager; every rank padded to the largest count.  As in sglang, the CPU
    #: count list the slicer sees is then the padded list ``[max] * dp_size``.
    MAX_LEN = "max_len"
    #: CUDA-graph replay; every rank owns ``graph_batch_size * num_tokens_per_bs`` rows.
    GRAPH_REPLAY = "graph_replay"
    #: CUDA-graph capture; a uniform dummy batch and no CPU counts at all.
    GRAPH_CAPTURE = "graph_capture"

    @property
    def is_graph(self) -> bool:
        return self in (Mode.GRAPH_REPLAY, Mode.GRAPH_CAPTURE)

    def __repr__(self) -> str:
        return f"Mode.{self.name}"


@dataclass(frozen=True)
class SliceCall:
    """What an engine hands its slice function for one rank of one forward.

    ``global_num_tokens_cpu`` mirrors the forward batch's field of that name:
    ``None`` during capture, a one-entry list when the all-gather was skipped.
    ``graph_extent`` is the rows each rank owns under graph replay
    (``cuda_graph_batch * num_tokens_per_bs``).  ``cuda_graph_batch`` is what
    upstream passes under that name: the graph's batch size ``bs``, a request
    count, which is *not* the extent under speculative decoding.
    """

    global_num_tokens_cpu: list[int] | None
    dp_rank: int
    dp_size: int
    can_run_graph: bool
    graph_extent: int | None
    cuda_graph_batch: int | None
    num_tokens_per_bs: int


@dataclass(frozen=True)
class RowSpan:
    """Where one rank's own rows sit in the gathered buffer, found by walking it."""

    first_row: int
    num_rows: int


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, repr=False)
class DPLayout:
    """One forward's gathered DP buffer, described.

    Args:
        counts: real tokens of each DP rank, before any rounding or padding.
        mode: how the ranks are laid out (see :class:`Mode`).
        attn_tp_size: counts are first rounded up to a multiple of this.
        graph_batch_size: the CUDA graph's batch size ``bs`` (graph modes only),
            the smallest captured size that holds every rank.
        num_tokens_per_bs: rows per request in the graph; above 1 under
            speculative decoding (EAGLE/MTP verify).
        gather_skipped: the all-gather was skipped; each rank's buffer holds
            only its own rows and its CPU count list has one entry.

    Raises:
        InvalidLayoutError: the description cannot happen in an engine.
    """

    counts: tuple[int, ...]
    mode: Mode = Mode.SUM_LEN
    attn_tp_size: int = 1
    graph_batch_size: int | None = None
    num_tokens_per_bs: int = 1
    gather_skipped: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.counts, tuple) or not self.counts:
            raise InvalidLayoutError(
                f"counts must be a non-empty tuple of ints, one per DP rank; got {self.counts!r}"
            )
        for rank, count in enumerate(self.counts):
            if not _is_int(count) or count < 0:
                raise InvalidLayoutError(
                    f"counts[{rank}] = {count!r}; every count must be an int >= 0"
                )
        if not isinstance(self.mode, Mode):
            raise InvalidLayoutError(f"mode must be a dpslice.Mode; got {self.mode!r}")
        for name in ("attn_tp_size", "num_tokens_per_bs"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise InvalidLayoutError(f"{name} must be an int >= 1; got {value!r}")
        if self.mode.is_graph:
            self._check_graph()
        elif self.graph_batch_size is not None or self.num_tokens_per_bs != 1:
            raise InvalidLayoutError(
                f"{self.mode.name} is an eager layout: leave graph_batch_size None and "
                "num_tokens_per_bs 1, or use Mode.GRAPH_REPLAY"
            )
        if self.gather_skipped and self.mode is Mode.GRAPH_CAPTURE:
            raise InvalidLayoutError(
                "a skipped all-gather has a one-entry count list, but capture has no "
                "CPU counts at all; use gather_skipped with an eager or replay layout"
            )

    def _check_graph(self) -> None:
        bs = self.graph_batch_size
        if not _is_int(bs) or bs is None or bs < 1:
            raise InvalidLayoutError(
                f"{self.mode.name} needs graph_batch_size, an int >= 1; got {bs!r}"
            )
        extent = bs * self.num_tokens_per_bs
        if self.mode is Mode.GRAPH_CAPTURE:
            if any(count != extent for count in self.counts):
                raise InvalidLayoutError(
                    f"capture runs a uniform dummy batch: every count must equal the "
                    f"graph extent {extent}; got {self.counts}. Use DPLayout.capture()"
                )
            return
        widest = self.widest_rows
        if widest > extent:
            raise InvalidLayoutError(
                f"a rank holds {widest} rows (after attention-TP rounding) but the graph "
                f"extent is {bs} * {self.num_tokens_per_bs} = {extent}; a graph of that "
                "size cannot replay this batch: raise graph_batch_size"
            )

    def __repr__(self) -> str:
        # Only what differs from the defaults, so a shrunk counterexample reads
        # as the smallest expression that rebuilds it.
        fields = [f"counts={self.counts!r}"]
        if self.mode is not Mode.SUM_LEN:
            fields.append(f"mode={self.mode!r}")
        for name, default in (
            ("attn_tp_size", 1),
            ("graph_batch_size", None),
            ("num_tokens_per_bs", 1),
            ("gather_skipped", False),
        ):
            value = getattr(self, name)
            if value != default:
                fields.append(f"{name}={value!r}")
        return f"DPLayout({', '.join(fields)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints falsifying examples with its pretty-printer, which
        # would otherwise list every field; keep the minimal repr there too.
        printer.text(repr(self))

    @classmethod
    def capture(cls, dp_size: int, graph_batch_size: int, num_tokens_per_bs: int = 1) -> DPLayout:
        """The uniform dummy batch of a CUDA-graph capture."""
        extent = graph_batch_size * num_tokens_per_bs
        return cls(
            counts=(extent,) * dp_size,
            mode=Mode.GRAPH_CAPTURE,
            graph_batch_size=graph_batch_size,
            num_tokens_per_bs=num_tokens_per_bs,
        )

    # -- sizes --------------------------------------------------------------

    @property
    def dp_size(self) -> int:
        return len(self.counts)

    @property
    def graph_extent(self) -> int | None:
        """Rows each rank owns in a graph (``bs * num_tokens_per_bs``), else None."""
        if self.graph_batch_size is None:
            return None
        return self.graph_batch_size * self.num_tokens_per_bs

    def rows(self, rank: int) -> int:
        """Rank ``rank``'s token count after attention-TP rounding."""
        return _round_up(self.counts[rank], self.attn_tp_size)

    @cached_property
    def widest_rows(self) -> int:
        """The largest rank's token count after attention-TP rounding (the MAX_LEN pad)."""
        # Cached: MAX_LEN asks it once per rank, which made walking a layout quadratic.
        return max(self.rows(rank) for rank in range(self.dp_size))

    def region(self, rank: int) -> int:
        """Rows rank ``rank`` contributes to the gather, padding included."""
        if self.mode.is_graph:
            extent = self.graph_extent
            assert extent is not None
            return extent
        if self.mode is Mode.MAX_LEN:
            return self.widest_rows
        return self.rows(rank)

    def owned_rows(self, rank: int) -> int:
        """Rows of the gathered buffer that belong to rank ``rank``'s own batch.

        This is the length its slice must have: the rows its own
        ``out_cache_loc`` has.  Under MAX_LEN the batch itself was padded to the
        max, so its padding rows are its own.
        """
        if self.mode in (Mode.MAX_LEN, Mode.GRAPH_CAPTURE):
            return self.region(rank)  # pragma: no mutate: region() ignores the rank here
        return self.rows(rank)

    # -- what the engine hands the slicer -----------------------------------

    def global_num_tokens_cpu(self, dp_rank: int) -> list[int] | None:
        """The CPU count list rank ``dp_rank`` holds, as the engine fills it."""
        self._check_rank(dp_rank)
        if self.mode is Mode.GRAPH_CAPTURE:
            return None
        if self.gather_skipped:
            return [self.owned_rows(dp_rank)]
        return [self.owned_rows(rank) for rank in range(self.dp_size)]

    def gpu_counts(self, dp_rank: int) -> list[int]:
        """The per-rank counts the GPU tensor carries; populated even in capture."""
        cpu = self.global_num_tokens_cpu(dp_rank)
        if cpu is not None:
            return cpu
        return list(self.counts)  # capture's dummy batch

    def global_num_tokens_gpu(
        self,
        dp_rank: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """The forward batch's ``global_num_tokens_gpu`` tensor (int64 unless told)."""
        import torch

        return torch.tensor(self.gpu_counts(dp_rank), dtype=dtype or torch.int64, device=device)

    def call(self, dp_rank: int) -> SliceCall:
        """The arguments an engine hands its slice function on rank ``dp_rank``."""
        return SliceCall(
            global_num_tokens_cpu=self.global_num_tokens_cpu(dp_rank),
            dp_rank=dp_rank,
            dp_size=self.dp_size,
            can_run_graph=self.mode.is_graph,
            graph_extent=self.graph_extent,
            cuda_graph_batch=self.graph_batch_size,
            num_tokens_per_bs=self.num_tokens_per_bs,
        )

    # -- the oracle ---------------------------------------------------------

    def gathered_ranks(self, dp_rank: int) -> tuple[int, ...]:
        """The ranks whose contributions rank ``dp_rank``'s buffer holds, in order."""
        self._check_rank(dp_rank)
        if self.gather_skipped:
            return (dp_rank,)
        return tuple(range(self.dp_size))

    def gathered_rows(self, dp_rank: int) -> int:
        """Length of rank ``dp_rank``'s gathered buffer."""
        return sum(self.region(rank) for rank in self.gathered_ranks(dp_rank))

    def span(self, dp_rank: int) -> RowSpan:
        """Where rank ``dp_rank``'s own rows sit, found by walking the contributions.

        The cheap form of the oracle, for layouts too large to materialise.
        """
        ranks = self.gathered_ranks(dp_rank)
        ahead = ranks[: ranks.index(dp_rank)]
        return RowSpan(sum(self.region(rank) for rank in ahead), self.owned_rows(dp_rank))

    def contribution(self, rank: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
        """Rank ``rank``'s tagged rows as it sends them to the gather, padding included."""
        import torch

        # int64 throughout: torch.arange of an int is int64, and the rest follow it.
        local = torch.arange(self.region(rank), device=device)
        local[self.counts[rank] :] = PAD_ROW
        return torch.stack((torch.full_like(local, rank), local), dim=1)

    def gathered(
        self,
        dp_rank: int,
        *,
        device: torch.device | str = "cpu",
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> torch.Tensor:
        """Materialise rank ``dp_rank``'s gathered buffer: ``(rows, 2)`` int64 tags.

        Row ``i`` is ``(rank, local_row)`` for a real token or ``(rank, PAD_ROW)``
        for padding that ``rank`` contributed.

        Raises:
            InvalidLayoutError: the buffer would exceed ``max_rows`` rows; use
                :meth:`span` for layouts that large.
        """
        import torch

        total = self.gathered_rows(dp_rank)
        if total > max_rows:
            raise InvalidLayoutError(
                f"the gathered buffer would have {total} rows, over max_rows={max_rows}; "
                "use DPLayout.span() for the position of a rank's rows, or raise max_rows"
            )
        parts = [self.contribution(rank, device=device) for rank in self.gathered_ranks(dp_rank)]
        return torch.cat(parts)

    def expected_rows(self, dp_rank: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
        """The tags rank ``dp_rank``'s slice must hold: its own rows, in order."""
        return self.contribution(dp_rank, device=device)[: self.owned_rows(dp_rank)]

    def _check_rank(self, dp_rank: int) -> None:
        if not _is_int(dp_rank) or not 0 <= dp_rank < self.dp_size:
            raise InvalidLayoutError(
                f"dp_rank must be an int in range({self.dp_size}); got {dp_rank!r}"
            )
