"""Hypothesis strategies for DP layouts, valid and invalid.

Every strategy validates its arguments before drawing anything and raises
:class:`hypothesis.errors.InvalidArgument` with a hint of what to pass instead.

Generation and shrinking: DP sizes are drawn small most of the time and shrink
towards the smallest allowed; counts shrink towards zero, modes towards
SUM_LEN, the attention-TP size towards the first one given, graph batch sizes
towards the smallest that holds every rank and ``num_tokens_per_bs`` towards 1.
A counterexample therefore shrinks to something like
``DPLayout(counts=(0, 1), mode=Mode.GRAPH_REPLAY, graph_batch_size=1, num_tokens_per_bs=2)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from dpslice.errors import (
    CountExceedsExtentError,
    CountsLengthError,
    CountsUnavailableError,
    DPSliceError,
    InvalidDPSizeError,
    InvalidGraphExtentError,
    MissingGraphExtentError,
    NegativeCountError,
    NonIntegerError,
    RankOutOfRangeError,
    TensorInputError,
)
from dpslice.layout import DPLayout, Mode, SliceCall

__all__ = [
    "INVALID_CAUSES",
    "MAX_COUNT",
    "InvalidCall",
    "dp_layouts",
    "dp_sizes",
    "invalid_calls",
    "layouts_and_ranks",
    "token_counts",
]

#: The largest token count drawn by default: the int32 limit engines hit.
MAX_COUNT = 2**31 - 1

#: Every error :func:`invalid_calls` can aim at, in the order it shrinks to.
INVALID_CAUSES: tuple[type[DPSliceError], ...] = (
    CountsUnavailableError,
    MissingGraphExtentError,
    CountExceedsExtentError,
    CountsLengthError,
    RankOutOfRangeError,
    InvalidDPSizeError,
    NegativeCountError,
    NonIntegerError,
    TensorInputError,
    InvalidGraphExtentError,
)

_ALL_MODES = tuple(Mode)


def _check_int(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidArgument(f"{name}={value!r} must be an int >= {minimum}")
    return value


def _check_sizes(min_name: str, min_size: object, max_name: str, max_size: object) -> None:
    _check_int(min_name, min_size, 1)
    _check_int(max_name, max_size, 1)
    if min_size > max_size:  # type: ignore[operator]
        raise InvalidArgument(
            f"{min_name}={min_size} > {max_name}={max_size}; pass {min_name} <= {max_name}"
        )


def dp_sizes(*, min_size: int = 1, max_size: int = 64) -> st.SearchStrategy[int]:
    """DP sizes in ``[min_size, max_size]``, mostly small (up to 8), shrinking to ``min_size``."""
    _check_sizes("min_size", min_size, "max_size", max_size)
    small = st.integers(min_size, min(max_size, max(min_size, 8)))
    # Each branch once: one_of drops a branch it already holds (st.integers is
    # cached, so even a second call gives the same object), so listing `small`
    # again would not weight it.
    return st.one_of(small, st.integers(min_size, max_size))


def token_counts(
    *, min_size: int = 1, max_size: int = 64, max_count: int = MAX_COUNT
) -> st.SearchStrategy[tuple[int, ...]]:
    """Per-rank token counts: zeros, all-zero ranks, small values and values up to ``max_count``.

    The number of ranks is drawn like :func:`dp_sizes`, mostly small.  Each
    count shrinks to 0; a tuple shrinks towards ``min_size`` entries by
    dropping ranks, so ranks that play no part in a failure disappear.
    """
    _check_sizes("min_size", min_size, "max_size", max_size)
    _check_int("max_count", max_count, 0)
    count = st.one_of(
        st.integers(0, min(max_count, 16)),
        st.integers(0, max_count),
        # Not st.just: a branch without a choice of its own never shrinks away,
        # so a count drawn there would stay at max_count in every counterexample.
        st.sampled_from((0, max_count)),
    )
    # A list rather than a size then a tuple: Hypothesis shrinks a list by
    # deleting entries anywhere, where a drawn size only shrinks from the end.
    return st.lists(count, min_size=min_size, max_size=max_size).map(tuple)


def _check_modes(modes: Sequence[Mode]) -> tuple[Mode, ...]:
    if isinstance(modes, Mode) or not isinstance(modes, Sequence) or not modes:
        raise InvalidArgument(
            f"modes={modes!r} must be a non-empty sequence of dpslice.Mode, "
            "e.g. modes=[Mode.SUM_LEN, Mode.GRAPH_REPLAY]"
        )
    for mode in modes:
        if not isinstance(mode, Mode):
            raise InvalidArgument(f"modes holds {mode!r}; every entry must be a dpslice.Mode")
    return tuple(modes)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def dp_layouts(
    *,
    modes: Sequence[Mode] = _ALL_MODES,
    min_dp_size: int = 1,
    max_dp_size: int = 64,
    max_count: int = MAX_COUNT,
    attn_tp_sizes: Sequence[int] = (1, 2, 4),
    max_num_tokens_per_bs: int = 8,
    gather_skipped: bool | None = None,
) -> st.SearchStrategy[DPLayout]:
    """Valid :class:`~dpslice.DPLayout` descriptions.

    Args:
        modes: the layout modes to draw from; shrinks towards the first.
        min_dp_size, max_dp_size: bounds on the DP size (1..64 by default).
        max_count: the largest real token count of a rank.  Keep it small
            (say 64) when the buffer is to be materialised.
        attn_tp_sizes: attention-TP sizes counts are rounded up to; shrinks to the first.
        max_num_tokens_per_bs: the largest rows-per-request of a graph (above 1
            under speculative decoding).
        gather_skipped: ``True`` for one-entry count lists only, ``False`` for
            full gathers only, ``None`` for both.  Capture layouts never skip it.
    """
    chosen_modes = _check_modes(modes)
    _check_int("max_count", max_count, 0)
    _check_int("max_num_tokens_per_bs", max_num_tokens_per_bs, 1)
    if not isinstance(attn_tp_sizes, Sequence) or not attn_tp_sizes:
        raise InvalidArgument(f"attn_tp_sizes={attn_tp_sizes!r} must be a non-empty sequence")
    for size in attn_tp_sizes:
        _check_int("attn_tp_sizes entry", size, 1)
    if gather_skipped is not None and not isinstance(gather_skipped, bool):
        raise InvalidArgument(f"gather_skipped={gather_skipped!r} must be True, False or None")
    if gather_skipped is True and chosen_modes == (Mode.GRAPH_CAPTURE,):
        raise InvalidArgument(
            "gather_skipped=True with modes=[Mode.GRAPH_CAPTURE] draws nothing: capture "
            "has no CPU counts to skip; add an eager or replay mode"
        )
    if gather_skipped is True:
        chosen_modes = tuple(mode for mode in chosen_modes if mode is not Mode.GRAPH_CAPTURE)
    _check_sizes("min_dp_size", min_dp_size, "max_dp_size", max_dp_size)
    counts = token_counts(min_size=min_dp_size, max_size=max_dp_size, max_count=max_count)
    skip_choices = [False, True] if gather_skipped is None else [gather_skipped]

    @st.composite
    def draw(draw: st.DrawFn) -> DPLayout:
        mode = draw(st.sampled_from(chosen_modes))
        drawn = draw(counts)
        if mode is Mode.GRAPH_CAPTURE:
            # The dummy batch holds at most max(max_count, 1) rows per rank.
            ntpb = draw(st.integers(1, max(1, min(max_num_tokens_per_bs, max_count))))
            bs = draw(st.integers(1, max(1, max_count // ntpb)))
            return DPLayout.capture(len(drawn), bs, ntpb)
        tp = draw(st.sampled_from(attn_tp_sizes))
        skipped = draw(st.sampled_from(skip_choices))
        if mode is not Mode.GRAPH_REPLAY:
            return DPLayout(drawn, mode, attn_tp_size=tp, gather_skipped=skipped)
        ntpb = draw(st.integers(1, max_num_tokens_per_bs))
        widest = max(_round_up(count, tp) for count in drawn)
        smallest_bs = max(1, -(-widest // ntpb))
        bs = smallest_bs + draw(st.integers(0, 3))
        return DPLayout(
            drawn,
            mode,
            attn_tp_size=tp,
            graph_batch_size=bs,
            num_tokens_per_bs=ntpb,
            gather_skipped=skipped,
        )

    return draw()


def layouts_and_ranks(
    layouts: st.SearchStrategy[DPLayout] | None = None,
) -> st.SearchStrategy[tuple[DPLayout, int]]:
    """A layout and one of its ranks; the rank shrinks towards the last rank.

    Counting from the last rank lets a counterexample lose the ranks ahead of
    the one that fails: ``counts=(0, 0, 0, 1)`` at rank 3 shrinks to
    ``counts=(0, 1)`` at rank 1.

    Args:
        layouts: where layouts come from; :func:`dp_layouts` by default.
    """
    if layouts is None:
        layouts = dp_layouts()
    elif not isinstance(layouts, st.SearchStrategy):
        raise InvalidArgument(
            f"layouts={layouts!r} must be a strategy, e.g. dp_layouts(max_count=64)"
        )
    return _with_rank(layouts)


@st.composite
def _with_rank(draw: st.DrawFn, layouts: st.SearchStrategy[DPLayout]) -> tuple[DPLayout, int]:
    # A composite rather than flatmap: flatmap builds a new strategy for every
    # draw, which costs more than the draw itself.
    layout = draw(layouts)
    back = draw(st.integers(0, layout.dp_size - 1))
    return layout, layout.dp_size - 1 - back


@dataclass(frozen=True)
class InvalidCall:
    """A slice call with exactly one defect, and the error it must raise.

    ``call`` may hold values of the wrong type on purpose (that is the defect);
    ``layout`` is the valid layout it was derived from, for the GPU counts.
    """

    layout: DPLayout
    call: SliceCall
    expected: type[DPSliceError]
    defect: str


def _non_integers() -> st.SearchStrategy[object]:
    return st.one_of(
        st.sampled_from([True, False]),
        # No allow_nan=False: NaN fails the filter, which Hypothesis rewrites as
        # min_value=0.0, a bound that rules NaN out by itself.
        st.floats(allow_infinity=False).filter(lambda v: v >= 0),
        st.sampled_from(["3", "0", None, b"1"]),
    )


def _tensor_values(values: object) -> object:
    import torch

    return torch.tensor(values)


def _base_layouts(
    cause: type[DPSliceError], max_count: int
) -> st.SearchStrategy[tuple[DPLayout, int]]:
    """The valid layouts an invalid call for ``cause`` is derived from."""
    replay_only = cause in (
        CountExceedsExtentError,
        MissingGraphExtentError,
        InvalidGraphExtentError,
    )
    modes = [Mode.GRAPH_REPLAY] if replay_only else [Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY]
    return layouts_and_ranks(
        dp_layouts(
            modes=modes,
            max_count=max_count,
            max_dp_size=16,
            gather_skipped=False if cause is CountsLengthError else None,
        )
    )


@st.composite
def _invalid_call(
    draw: st.DrawFn,
    cause: type[DPSliceError],
    base: st.SearchStrategy[tuple[DPLayout, int]],
    max_count: int,
) -> InvalidCall:
    layout, rank = draw(base)
    call = layout.call(rank)
    counts = call.global_num_tokens_cpu
    assert counts is not None
    slot = draw(st.integers(0, len(counts) - 1))
    defect: str
    if cause is CountsUnavailableError:
        call, defect = replace(call, global_num_tokens_cpu=None), "global_num_tokens_cpu is None"
    elif cause is MissingGraphExtentError:
        call = replace(call, graph_extent=None, cuda_graph_batch=None)
        defect = "can_run_graph without a graph extent"
    elif cause is InvalidGraphExtentError:
        extent = -draw(st.integers(1, max_count))
        call, defect = replace(call, graph_extent=extent), f"graph_extent = {extent}"
    elif cause is CountExceedsExtentError:
        assert call.graph_extent is not None
        over = call.graph_extent + draw(st.integers(1, max_count))
        bad = [*counts[:slot], over, *counts[slot + 1 :]]
        call, defect = replace(call, global_num_tokens_cpu=bad), f"count {over} over the extent"
    elif cause is CountsLengthError:
        n = layout.dp_size
        lengths = st.integers(0, n + 4).filter(lambda k: k not in (1, n))
        k = draw(lengths)
        bad = (counts * (k // n + 1))[:k]
        call, defect = replace(call, global_num_tokens_cpu=bad), f"{k} counts for dp_size={n}"
    elif cause is RankOutOfRangeError:
        rank_bad = draw(
            st.one_of(st.integers(layout.dp_size, layout.dp_size + 8), st.integers(-8, -1))
        )
        call, defect = replace(call, dp_rank=rank_bad), f"dp_rank = {rank_bad}"
    elif cause is InvalidDPSizeError:
        size_bad = draw(st.integers(-4, 0))
        call, defect = replace(call, dp_size=size_bad, dp_rank=0), f"dp_size = {size_bad}"
    elif cause is NegativeCountError:
        negative = -draw(st.integers(1, max_count))
        bad = [*counts[:slot], negative, *counts[slot + 1 :]]
        call, defect = replace(call, global_num_tokens_cpu=bad), f"count {negative}"
    elif cause is NonIntegerError:
        where = draw(st.sampled_from(["count", "dp_rank", "dp_size", "graph_extent"]))
        value = draw(_non_integers())
        if where == "graph_extent" and (value is None or not call.can_run_graph):
            where = "count"  # a None extent is the missing-extent case, not this one
        if where == "count":
            bad = [*counts[:slot], value, *counts[slot + 1 :]]  # type: ignore[list-item]
            call = replace(call, global_num_tokens_cpu=bad)
        else:
            call = replace(call, **{where: value})  # type: ignore[arg-type]
        defect = f"{where} is {value!r}"
    elif cause is TensorInputError:
        where = draw(st.sampled_from(["counts", "count", "dp_rank"]))
        if where == "counts":
            call = replace(call, global_num_tokens_cpu=_tensor_values(counts))  # type: ignore[arg-type]
        elif where == "count":
            bad = [*counts[:slot], _tensor_values(counts[slot]), *counts[slot + 1 :]]  # type: ignore[list-item]
            call = replace(call, global_num_tokens_cpu=bad)
        else:
            call = replace(call, dp_rank=_tensor_values(rank))  # type: ignore[arg-type]
        defect = f"a tensor as {where}"
    else:
        raise InvalidArgument(f"no invalid-call generator for {cause.__name__}")
    return InvalidCall(layout=layout, call=call, expected=cause, defect=defect)


def invalid_calls(
    *,
    causes: Sequence[type[DPSliceError]] = INVALID_CAUSES,
    max_count: int = 1024,
) -> st.SearchStrategy[InvalidCall]:
    """Slice calls with exactly one defect, each labelled with the error it must raise.

    Args:
        causes: the errors to aim at, a subset of :data:`INVALID_CAUSES`.
        max_count: the largest count of the valid layout each call derives from.
    """
    if isinstance(causes, type) or not isinstance(causes, Sequence) or not causes:
        raise InvalidArgument(
            f"causes={causes!r} must be a non-empty sequence of errors from INVALID_CAUSES"
        )
    for cause in causes:
        if cause not in INVALID_CAUSES:
            raise InvalidArgument(
                f"causes holds {cause!r}; choose from dpslice.strategies.INVALID_CAUSES"
            )
    _check_int("max_count", max_count, 1)
    # Built once per cause, not per draw: building a layout strategy costs
    # far more than drawing from it.
    per_cause = {
        cause: _invalid_call(cause, _base_layouts(cause, max_count), max_count) for cause in causes
    }
    return st.sampled_from(tuple(causes)).flatmap(per_cause.__getitem__)
