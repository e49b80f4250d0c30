"""Ground truth: what one forward's gathered DP buffer really looks like.

A :class:`DPLayout` derives what the engine hands the slicer (:meth:`DPLayout.call`)
and the gathered buffer itself (:meth:`DPLayout.gathered`), rows tagged
``(rank, local_row)``: the oracle, assembled piece by piece, never from a slice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any

from dpslice.errors import InvalidLayoutError

if TYPE_CHECKING:
    import torch

__all__ = ["PAD_ROW", "DPLayout", "Mode", "Owns", "RowSpan", "SliceCall"]

#: ``local_row`` tag of a padding row (attention-TP rounding, MAX_LEN, graph extent).
PAD_ROW = -1

#: Largest buffer :meth:`DPLayout.gathered` builds unless told otherwise.
DEFAULT_MAX_ROWS = 1 << 20


class Mode(enum.Enum):
    """How the engine laid the ranks out in the gathered buffer."""

    #: Eager; ranks packed back to back.
    SUM_LEN = "sum_len"
    #: Eager; every rank padded to the largest count, and the CPU list padded too.
    MAX_LEN = "max_len"
    #: Decode CUDA-graph replay; each rank owns ``graph_batch_size * num_tokens_per_bs`` rows.
    GRAPH_REPLAY = "graph_replay"
    #: CUDA-graph capture; a uniform dummy batch and no CPU counts at all.
    GRAPH_CAPTURE = "graph_capture"
    #: Prefill CUDA-graph replay (sglang #30712): every rank padded to the bucket
    #: ``graph_batch_size`` in tokens, the padded list written back into the CPU counts.
    PREFILL_GRAPH = "prefill_graph"
    #: One chunk of DP chunking (vLLM): at most ``chunk_size`` rows a rank, at least one.
    DP_CHUNK = "dp_chunk"

    @property
    def is_graph(self) -> bool:
        """The forward runs a CUDA graph: the engine passes ``can_run_graph=True``."""
        return self in (Mode.GRAPH_REPLAY, Mode.GRAPH_CAPTURE, Mode.PREFILL_GRAPH)

    @property
    def is_decode_graph(self) -> bool:
        """A decode graph, with a per-rank extent of ``bs * num_tokens_per_bs`` rows."""
        return self in (Mode.GRAPH_REPLAY, Mode.GRAPH_CAPTURE)

    def __repr__(self) -> str:
        return f"Mode.{self.name}"


class Owns(enum.Enum):
    """Which rows of the gathered buffer a rank's slice must cover."""

    #: The rows of the rank's own batch, as many as its CPU count says (a capturer).
    REAL_ROWS = "real_rows"
    #: The rank's whole block, padding included (in-graph scatter, vLLM's combine).
    PADDED_BLOCK = "padded_block"

    def __repr__(self) -> str:
        return f"Owns.{self.name}"


@dataclass(frozen=True)
class SliceCall:
    """What an engine hands its slice function for one rank of one forward.

    ``global_num_tokens_cpu`` is ``None`` during capture and one entry when the gather
    was skipped; ``graph_extent`` is the rows each rank owns under decode-graph replay
    and ``cuda_graph_batch`` the graph's request count ``bs`` (both ``None`` in a
    prefill graph); ``chunk_size`` and ``chunk_index`` are set for one chunk of DP chunking.
    """

    global_num_tokens_cpu: list[int] | None
    dp_rank: int
    dp_size: int
    can_run_graph: bool
    graph_extent: int | None
    cuda_graph_batch: int | None
    num_tokens_per_bs: int
    chunk_size: int | None = None
    chunk_index: int | None = None


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
        graph_batch_size: the CUDA graph's batch size ``bs`` (decode graph
            modes), the smallest captured size that holds every rank; for
            :attr:`Mode.PREFILL_GRAPH`, the bucket in tokens every rank is padded to.
        num_tokens_per_bs: rows per request in the graph; above 1 under
            speculative decoding (EAGLE/MTP verify).
        gather_skipped: the all-gather was skipped; each rank's buffer holds
            only its own rows and its CPU count list has one entry.
        chunk_size, chunk_index: the chunk of :attr:`Mode.DP_CHUNK` gathered
            (``chunk_size`` tokens per rank at most, chunk ``chunk_index``).

    Raises:
        InvalidLayoutError: the description cannot happen in an engine.
    """

    counts: tuple[int, ...]
    mode: Mode = Mode.SUM_LEN
    attn_tp_size: int = 1
    graph_batch_size: int | None = None
    num_tokens_per_bs: int = 1
    gather_skipped: bool = False
    chunk_size: int | None = None
    chunk_index: int = 0

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
        if self.mode is Mode.DP_CHUNK:
            self._check_chunk()
        elif self.chunk_size is not None or self.chunk_index != 0:
            raise InvalidLayoutError(
                f"chunk_size and chunk_index belong to Mode.DP_CHUNK; leave them unset "
                f"for {self.mode.name}"
            )
        if self.gather_skipped and self.mode is Mode.GRAPH_CAPTURE:
            raise InvalidLayoutError(
                "a skipped all-gather has a one-entry count list, but capture has no "
                "CPU counts at all; use gather_skipped with an eager or replay layout"
            )

    def _check_graph(self) -> None:
        bs, prefill = self.graph_batch_size, self.mode is Mode.PREFILL_GRAPH
        if not _is_int(bs) or bs is None or bs < 1:
            what = "the bucket in tokens (an int >= 1)" if prefill else "an int >= 1"
            raise InvalidLayoutError(f"{self.mode.name} needs graph_batch_size, {what}; got {bs!r}")
        if prefill and self.num_tokens_per_bs != 1:
            raise InvalidLayoutError(
                "a prefill graph pads tokens, not requests: leave num_tokens_per_bs 1"
            )
        extent = bs * self.num_tokens_per_bs
        if self.mode is Mode.GRAPH_CAPTURE:
            if any(count != extent for count in self.counts):
                raise InvalidLayoutError(
                    f"capture runs a uniform dummy batch: every count must equal the "
                    f"graph extent {extent}; got {self.counts}. Use DPLayout.capture()"
                )
        elif self.widest_rows > extent:
            room = (
                f"prefill bucket is {bs}; the batch would not fit that graph"
                if prefill
                else f"graph extent is {bs} * {self.num_tokens_per_bs} = {extent}; a graph of "
                "that size cannot replay this batch"
            )
            raise InvalidLayoutError(
                f"a rank holds {self.widest_rows} rows (after attention-TP rounding) but the "
                f"{room}: raise graph_batch_size"
            )

    def _check_chunk(self) -> None:
        size, index = self.chunk_size, self.chunk_index
        if not _is_int(size) or size is None or size < 1:
            raise InvalidLayoutError(f"DP_CHUNK needs chunk_size, an int >= 1; got {size!r}")
        if self.attn_tp_size != 1:
            raise InvalidLayoutError("DP chunking does not round counts: leave attn_tp_size 1")
        chunks = max(1, -(-max(self.counts) // size))
        if not _is_int(index) or not 0 <= index < chunks:
            raise InvalidLayoutError(
                f"chunk_index must be an int in range({chunks}) for the largest count "
                f"{max(self.counts)} in chunks of {size}; got {index!r}"
            )

    def __repr__(self) -> str:
        # Only what differs from the defaults: the smallest expression that rebuilds it.
        shown = [f"counts={self.counts!r}"]
        for field in fields(self)[1:]:
            value = getattr(self, field.name)
            if value != field.default:
                shown.append(f"{field.name}={value!r}")
        return f"DPLayout({', '.join(shown)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis's pretty-printer would list every field.
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
        """Rows each rank owns in a decode graph (``bs * num_tokens_per_bs``), else None."""
        if self.graph_batch_size is None or not self.mode.is_decode_graph:
            return None
        return self.graph_batch_size * self.num_tokens_per_bs

    def rows(self, rank: int) -> int:
        """Rank ``rank``'s token count after attention-TP rounding."""
        return _round_up(self.counts[rank], self.attn_tp_size)

    @cached_property
    def widest_rows(self) -> int:
        """The largest rank's token count after attention-TP rounding (the MAX_LEN pad)."""
        return max(self.rows(rank) for rank in range(self.dp_size))

    def _chunk_rows(self, rank: int) -> tuple[int, int]:
        """Rank ``rank``'s real rows in the chunk, and the rows it sends (at least one)."""
        assert self.chunk_size is not None
        left = self.counts[rank] - self.chunk_size * self.chunk_index
        real = max(0, min(self.chunk_size, left))
        return real, max(1, real)

    def region(self, rank: int) -> int:
        """Rows rank ``rank`` contributes to the gather, padding included."""
        if self.mode.is_decode_graph:
            extent = self.graph_extent
            assert extent is not None
            return extent
        if self.mode is Mode.PREFILL_GRAPH:
            assert self.graph_batch_size is not None
            return self.graph_batch_size
        if self.mode is Mode.MAX_LEN:
            return self.widest_rows
        if self.mode is Mode.DP_CHUNK:
            return self._chunk_rows(rank)[1]
        return self.rows(rank)

    def real_rows(self, rank: int) -> int:
        """Rows of rank ``rank``'s contribution that carry its tokens (the rest is padding)."""
        if self.mode is Mode.DP_CHUNK:
            return self._chunk_rows(rank)[0]
        return self.counts[rank]

    def owned_rows(self, rank: int, owns: Owns = Owns.REAL_ROWS) -> int:
        """Rows of the gathered buffer that belong to rank ``rank``: its slice's length.

        :attr:`Owns.REAL_ROWS`: its CPU count (padded by the engine under MAX_LEN and in a
        prefill graph); :attr:`Owns.PADDED_BLOCK`: its whole contribution.
        """
        if owns is Owns.PADDED_BLOCK or self.mode in (
            Mode.MAX_LEN,
            Mode.GRAPH_CAPTURE,
            Mode.PREFILL_GRAPH,
        ):
            return self.region(rank)
        if self.mode is Mode.SUM_LEN:
            return self.rows(rank)
        return self.real_rows(rank)

    # -- what the engine hands the slicer -----------------------------------

    def _cpu_count(self, rank: int) -> int:
        if self.mode is Mode.DP_CHUNK:
            return self.counts[rank]  # chunking starts from the whole forward's counts
        return self.owned_rows(rank)

    def global_num_tokens_cpu(self, dp_rank: int) -> list[int] | None:
        """The CPU count list rank ``dp_rank`` holds, as the engine fills it."""
        self._check_rank(dp_rank)
        if self.mode is Mode.GRAPH_CAPTURE:
            return None
        if self.gather_skipped:
            return [self._cpu_count(dp_rank)]
        return [self._cpu_count(rank) for rank in range(self.dp_size)]

    def gpu_counts(self, dp_rank: int) -> list[int]:
        """The per-rank counts the GPU tensor carries; populated even in capture."""
        cpu = self.global_num_tokens_cpu(dp_rank)
        if cpu is not None:
            return cpu
        return list(self.counts)  # capture's dummy batch

    def block_counts(self, dp_rank: int) -> list[int]:
        """Every gathered rank's whole block: what a graph replay fills the GPU counts with."""
        return [self.region(rank) for rank in self.gathered_ranks(dp_rank)]

    def global_num_tokens_gpu(
        self,
        dp_rank: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """The forward batch's ``global_num_tokens_gpu`` tensor (int64 unless told)."""
        from dpslice._numpy_notice import torch

        return torch.tensor(self.gpu_counts(dp_rank), dtype=dtype or torch.int64, device=device)

    def call(self, dp_rank: int) -> SliceCall:
        """The arguments an engine hands its slice function on rank ``dp_rank``."""
        return SliceCall(
            global_num_tokens_cpu=self.global_num_tokens_cpu(dp_rank),
            dp_rank=dp_rank,
            dp_size=self.dp_size,
            can_run_graph=self.mode.is_graph,
            graph_extent=self.graph_extent,
            cuda_graph_batch=self.graph_batch_size if self.mode.is_decode_graph else None,
            num_tokens_per_bs=self.num_tokens_per_bs,
            chunk_size=self.chunk_size,  # None but under DP_CHUNK (see __post_init__)
            chunk_index=self.chunk_index if self.mode is Mode.DP_CHUNK else None,
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

    def span(self, dp_rank: int, owns: Owns = Owns.REAL_ROWS) -> RowSpan:
        """Where rank ``dp_rank``'s own rows sit, found by walking the contributions (no buffer)."""
        ranks = self.gathered_ranks(dp_rank)
        ahead = ranks[: ranks.index(dp_rank)]
        return RowSpan(sum(self.region(rank) for rank in ahead), self.owned_rows(dp_rank, owns))

    def contribution(self, rank: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
        """Rank ``rank``'s tagged rows as it sends them, padding included.

        A real row's tag is its row in the rank's whole batch (chunk ``k`` starts at
        ``chunk_size * k``).
        """
        from dpslice._numpy_notice import torch

        # int64 throughout: torch.arange of an int is int64, and the rest follow it.
        local = torch.arange(self.region(rank), device=device)
        if self.mode is Mode.DP_CHUNK:
            assert self.chunk_size is not None
            local += self.chunk_size * self.chunk_index
        local[self.real_rows(rank) :] = PAD_ROW
        return torch.stack((torch.full_like(local, rank), local), dim=1)

    def gathered(
        self,
        dp_rank: int,
        *,
        device: torch.device | str = "cpu",
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> torch.Tensor:
        """Materialise rank ``dp_rank``'s gathered buffer: ``(rows, 2)`` int64 tags.

        Raises:
            InvalidLayoutError: the buffer would exceed ``max_rows`` rows; use :meth:`span`.
        """
        from dpslice._numpy_notice import torch

        total = self.gathered_rows(dp_rank)
        if total > max_rows:
            raise InvalidLayoutError(
                f"the gathered buffer would have {total} rows, over max_rows={max_rows}; "
                "use DPLayout.span() for the position of a rank's rows, or raise max_rows"
            )
        parts = [self.contribution(rank, device=device) for rank in self.gathered_ranks(dp_rank)]
        return torch.cat(parts)

    def expected_rows(
        self, dp_rank: int, owns: Owns = Owns.REAL_ROWS, *, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """The tags rank ``dp_rank``'s slice must hold: the rows it owns, in order."""
        return self.contribution(dp_rank, device=device)[: self.owned_rows(dp_rank, owns)]

    def _check_rank(self, dp_rank: int) -> None:
        if not _is_int(dp_rank) or not 0 <= dp_rank < self.dp_size:
            raise InvalidLayoutError(
                f"dp_rank must be an int in range({self.dp_size}); got {dp_rank!r}"
            )
