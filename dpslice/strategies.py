"""Hypothesis strategies for DP layouts, valid and invalid.

Every strategy checks its arguments before drawing and raises
:class:`hypothesis.errors.InvalidArgument` with a hint.  A layout is mostly one
choice, a byte string of header fields and a byte per rank (:class:`_Layouts`),
since Hypothesis's cost is per choice and per draw.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Container, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from dpslice import errors

# Imported now, so that a test's first example does not pay torch's import
# against Hypothesis's deadline.
from dpslice._numpy_notice import torch
from dpslice.contracts import Contract
from dpslice.errors import InvalidInputError
from dpslice.layout import DPLayout, Mode, SliceCall, _round_up

__all__ = [
    "DEFECT_KINDS",
    "INVALID_CAUSES",
    "MAX_COUNT",
    "MAX_DP_SIZE",
    "InvalidCall",
    "contract_layouts",
    "dp_layouts",
    "dp_sizes",
    "invalid_calls",
    "layouts_and_ranks",
    "token_counts",
]

#: The largest token count drawn by default: the int32 limit engines hit.
MAX_COUNT = 2**31 - 1

#: The most ranks drawn by default.
MAX_DP_SIZE = 64

_ALL_MODES = tuple(Mode)

_T = TypeVar("_T")


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


def dp_sizes(*, min_size: int = 1, max_size: int = MAX_DP_SIZE) -> st.SearchStrategy[int]:
    """DP sizes in ``[min_size, max_size]``, mostly small (up to 8), shrinking to ``min_size``."""
    _check_sizes("min_size", min_size, "max_size", max_size)
    small = st.integers(min_size, min(max_size, max(min_size, 8)))
    # Each branch once: one_of drops a branch it already holds (st.integers is cached).
    return st.one_of(small, st.integers(min_size, max_size))


class _Built:
    """Strategies built once per key (a DP size, not a count): building costs more than drawing."""

    def __init__(self) -> None:
        self._built: dict[Hashable, st.SearchStrategy[Any]] = {}

    def integers(self, low: int, high: int) -> st.SearchStrategy[int]:
        return self.get((low, high), lambda: st.integers(low, high))

    def get(
        self, key: Hashable, make: Callable[[], st.SearchStrategy[_T]]
    ) -> st.SearchStrategy[_T]:
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = make()
        return built


# -- count lists, drawn in few choices -----------------------------------------------

#: How a count byte decodes, by bands of its 256 values: the least count, the
#: small counts above it, any count of the range, and the largest count.
_LEAST_BYTES, _SMALL_BYTES, _ANY_BYTES = 52, 96, 64

#: The small counts are the least count plus 1 to 16.
_SMALL_TOP = 16

#: A count of the "any" band where the range has more counts than the band has
#: bytes: a choice of its own.
_DRAWN_APART = -1

#: How long a count list is: Hypothesis's own mix up to ``_SMALL_SIZE`` entries;
#: where more are allowed, one of ``_SIZE_ODDS`` values picks that mix but for the
#: last two, a long list and the most entries allowed.  It picks the strategy that
#: draws the bytes, not what they mean, so it shrinks to the plain mix.
_SIZE_ODDS, _SMALL_SIZE = 32, 16


def _count_table(min_count: int, max_count: int) -> tuple[int, ...]:
    """What each value of a count byte decodes to (:data:`_DRAWN_APART`: drawn apart)."""
    span = max_count - min_count
    small_end = _LEAST_BYTES + _SMALL_BYTES
    table = []
    for byte in range(256):
        if byte < _LEAST_BYTES:
            offset = 0
        elif byte < small_end:
            offset = 1 + (byte - _LEAST_BYTES) * _SMALL_TOP // _SMALL_BYTES
        elif byte < small_end + _ANY_BYTES:
            if span >= _ANY_BYTES:
                table.append(_DRAWN_APART)
                continue
            offset = (byte - small_end) * (span + 1) // _ANY_BYTES
        else:
            offset = span
        table.append(min_count + min(offset, span))
    return tuple(table)


class _CountLists:
    """Count lists of ``min_size`` to ``max_size`` entries from ``min_count`` to ``max_count``.

    One byte string, a byte per rank after ``header`` bytes the caller reads; Hypothesis
    shrinks it as a list, and a lower byte never decodes to a larger count in its band.
    """

    def __init__(
        self, min_size: int, max_size: int, min_count: int, max_count: int, header: int = 0
    ) -> None:
        self.header = header
        self.plain = st.binary(min_size=header + min_size, max_size=header + max_size)
        self.long = st.binary(
            min_size=header + max(min_size, _SMALL_SIZE + 1), max_size=header + max_size
        )
        self.full = st.binary(min_size=header + max_size, max_size=header + max_size)
        self.sizes = st.integers(0, _SIZE_ODDS - 1) if max_size > _SMALL_SIZE else None
        self.table = _count_table(min_count, max_count)
        self.apart = st.integers(min_count, max_count) if _DRAWN_APART in self.table else None

    def raw(self, draw: st.DrawFn) -> bytes:
        """The header's bytes, then a byte per rank."""
        if self.sizes is None:
            return draw(self.plain)
        size = draw(self.sizes)
        if size < _SIZE_ODDS - 2:
            return draw(self.plain)
        return draw(self.long if size == _SIZE_ODDS - 2 else self.full)

    def counts(self, draw: st.DrawFn, raw: bytes) -> tuple[int, ...]:
        """The counts of the bytes ``raw`` holds after its header."""
        table = self.table
        counts = [table[byte] for byte in raw[self.header :]]
        apart = self.apart
        if apart is None:
            return tuple(counts)
        return tuple(draw(apart) if count == _DRAWN_APART else count for count in counts)

    def drawn(self, draw: st.DrawFn) -> tuple[int, ...]:
        return self.counts(draw, self.raw(draw))


def token_counts(
    *,
    min_size: int = 1,
    max_size: int = MAX_DP_SIZE,
    max_count: int = MAX_COUNT,
    min_count: int = 0,
) -> st.SearchStrategy[tuple[int, ...]]:
    """Per-rank token counts: zeros, all-zero ranks, small values and values up to ``max_count``.

    The number of ranks is mostly small (about six); above 16 allowed, one list in 32
    is long and one in 32 has ``max_size`` entries.  A count is ``min_count`` about a
    fifth of the time, 1 to 16 above it two fifths, ``max_count`` a sixth and anywhere
    a quarter.  Counts shrink to ``min_count``, and ranks that play no part in a
    failure are dropped.
    """
    _check_sizes("min_size", min_size, "max_size", max_size)
    _check_int("min_count", min_count, 0)
    _check_int("max_count", max_count, min_count)
    return _drawn(_CountLists(min_size, max_size, min_count, max_count).drawn)


# Decorated once, at import: decorating reads the source.
@st.composite
def _drawn(draw: st.DrawFn, how: Callable[[st.DrawFn], _T]) -> _T:
    return how(draw)


def _check_listed(
    name: str, values: object, single: type, what: str, allowed: Container[Any], choose: str
) -> None:
    """``values`` must be a non-empty sequence, not a ``single``, of ``allowed`` entries."""
    if isinstance(values, single) or not isinstance(values, Sequence) or not values:
        raise InvalidArgument(f"{name}={values!r} must be a non-empty sequence of {what}")
    for value in values:
        if value not in allowed:
            raise InvalidArgument(f"{name} holds {value!r}; {choose}")


def _check_modes(modes: Sequence[Mode]) -> tuple[Mode, ...]:
    what = "dpslice.Mode, e.g. modes=[Mode.SUM_LEN, Mode.GRAPH_REPLAY]"
    _check_listed("modes", modes, Mode, what, _ALL_MODES, "every entry must be a dpslice.Mode")
    return tuple(modes)


def _choice_among(values: Sequence[_T]) -> st.SearchStrategy[_T]:
    """One of ``values``, shrinking to the first (a range is not listed)."""
    if isinstance(values, range):
        return st.integers(values[0], values[-1])  # type: ignore[return-value]
    return st.sampled_from(values)


class _Layouts:
    """How :func:`dp_layouts` draws a layout, every strategy it draws from built once.

    A field with a choice is a byte of the count bytes' header, picking among its
    values in order (shrinking to the first); one of over 256 values is drawn apart.
    """

    def __init__(
        self,
        modes: tuple[Mode, ...],
        attn_tp_sizes: Sequence[int],
        max_num_tokens_per_bs: int,
        skip_choices: Sequence[bool],
        dp_sizes: tuple[int, int],
        counts: tuple[int, int],
    ) -> None:
        graphs = {Mode.GRAPH_REPLAY, Mode.PREFILL_GRAPH} & set(modes)
        values: list[Sequence[Any]] = [
            modes,
            tuple(skip_choices),
            tuple(attn_tp_sizes),
            range(1, max_num_tokens_per_bs + 1) if Mode.GRAPH_REPLAY in modes else (1,),
            range(4) if graphs else (0,),
        ]
        #: Each field's value where it has no choice.
        self.first = [field[0] for field in values]
        #: The fields in the header, and those drawn apart.
        self.in_header = [
            (field, values[field]) for field in range(5) if 1 < len(values[field]) <= 256
        ]
        self.apart = [
            (field, _choice_among(values[field])) for field in range(5) if len(values[field]) > 256
        ]
        self.counts = _CountLists(*dp_sizes, *counts, header=len(self.in_header))
        # With a rank: one more byte, the header's last (see layout_and_rank).
        self.ranked = _CountLists(*dp_sizes, *counts, header=len(self.in_header) + 1)
        # The dummy batch holds at most max(max_count, 1) rows per rank.
        self.capture_num_tokens_per_bs = st.integers(
            1, max(1, min(max_num_tokens_per_bs, counts[1]))
        )
        self.max_count = counts[1]
        self.built = _Built()

    def picked(self, draw: st.DrawFn, raw: bytes) -> list[Any]:
        """The fields, from the header of ``raw`` and those drawn apart."""
        picked = list(self.first)
        for position, (field, values) in enumerate(self.in_header):
            picked[field] = values[raw[position] * len(values) >> 8]
        for field, strategy in self.apart:
            picked[field] = draw(strategy)
        return picked

    def fields(
        self, draw: st.DrawFn, lists: _CountLists
    ) -> tuple[tuple[int, ...], Mode, dict[str, Any], bytes]:
        """A layout's counts, mode and other fields, and the bytes drawn from ``lists``."""
        raw = lists.raw(draw)
        mode, skipped, tp, ntpb, padding = self.picked(draw, raw)
        if mode is Mode.GRAPH_CAPTURE:
            size = len(raw) - lists.header
            ntpb = draw(self.capture_num_tokens_per_bs)
            bs = draw(self.built.integers(1, max(1, self.max_count // ntpb)))
            # DPLayout.capture's uniform dummy batch.
            capture = {"graph_batch_size": bs, "num_tokens_per_bs": ntpb}
            return (bs * ntpb,) * size, mode, capture, raw
        drawn = lists.counts(draw, raw)
        if mode is Mode.DP_CHUNK:
            # Built per draw: their bounds take too many values to keep.
            size = draw(st.integers(1, max(1, max(drawn))))
            index = draw(st.integers(0, max(1, -(-max(drawn) // size)) - 1))
            chunk = {"gather_skipped": skipped, "chunk_size": size, "chunk_index": index}
            return drawn, mode, chunk, raw
        fields: dict[str, Any] = {"attn_tp_size": tp, "gather_skipped": skipped}
        if mode.is_graph:  # a prefill graph or a replay: capture returned above
            widest = max(_round_up(count, tp) for count in drawn)
            if mode is Mode.GRAPH_REPLAY:
                widest, fields["num_tokens_per_bs"] = -(-widest // ntpb), ntpb
            fields["graph_batch_size"] = max(1, widest) + padding
        return drawn, mode, fields, raw

    def layout(self, draw: st.DrawFn) -> DPLayout:
        counts, mode, fields, _ = self.fields(draw, self.counts)
        return DPLayout(counts, mode, **fields)

    def layout_and_rank(self, draw: st.DrawFn) -> tuple[DPLayout, int]:
        """A layout and one of its ranks in one draw (see :func:`layouts_and_ranks`).

        The rank holds the last count drawn and the first ``after`` counts (the last
        header byte's share) follow it: as that byte shrinks they move to the front,
        where a counterexample can lose them.
        """
        counts, mode, fields, raw = self.fields(draw, self.ranked)
        after = _share(raw[self.ranked.header - 1], len(counts))
        layout = DPLayout(counts[after:] + counts[:after], mode, **fields)
        return layout, len(counts) - 1 - after


def _share(byte: int, ranks: int) -> int:
    """How many of ``ranks`` ranks follow a layout's rank, by a byte of its header."""
    if byte < ranks:
        return byte
    return (byte - ranks) * ranks // (256 - ranks)


@st.composite
def _with_rank(
    draw: st.DrawFn, layouts: st.SearchStrategy[DPLayout], built: _Built
) -> tuple[DPLayout, int]:
    # Not flatmap, which builds a strategy per draw.
    layout = draw(layouts)
    back = draw(built.integers(0, layout.dp_size - 1))
    return layout, layout.dp_size - 1 - back


#: The plan behind each strategy :func:`dp_layouts` returned, so that
#: :func:`layouts_and_ranks` draws the rank in the same draw as the layout.
_PLANS: weakref.WeakKeyDictionary[st.SearchStrategy[DPLayout], _Layouts] = (
    weakref.WeakKeyDictionary()
)


def dp_layouts(
    *,
    modes: Sequence[Mode] = _ALL_MODES,
    min_dp_size: int = 1,
    max_dp_size: int = MAX_DP_SIZE,
    max_count: int = MAX_COUNT,
    attn_tp_sizes: Sequence[int] = (1, 2, 4),
    max_num_tokens_per_bs: int = 8,
    gather_skipped: bool | None = None,
    min_count: int = 0,
) -> st.SearchStrategy[DPLayout]:
    """Valid :class:`~dpslice.DPLayout` descriptions.

    Args:
        modes: the layout modes to draw from; shrinks towards the first.
        min_dp_size, max_dp_size: bounds on the DP size (1..64 by default).
        max_count: the largest real token count of a rank.  Keep it small
            (say 64) when the buffer is to be materialised.
        min_count: the smallest (1 for engines that never gather an empty rank).
        attn_tp_sizes: attention-TP sizes counts are rounded up to; shrinks to the first.
        max_num_tokens_per_bs: the largest rows-per-request of a graph (above 1
            under speculative decoding).
        gather_skipped: ``True`` for one-entry count lists only, ``False`` for
            full gathers only, ``None`` for both.  Capture layouts never skip it.
    """
    chosen_modes = _check_modes(modes)
    _check_int("min_count", min_count, 0)
    _check_int("max_count", max_count, min_count)
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
    skip_choices = [False, True] if gather_skipped is None else [gather_skipped]
    plan = _Layouts(
        chosen_modes,
        attn_tp_sizes,
        max_num_tokens_per_bs,
        skip_choices,
        (min_dp_size, max_dp_size),
        (min_count, max_count),
    )
    layouts = _drawn(plan.layout)
    _PLANS[layouts] = plan
    return layouts


def _check_contract(contract: object) -> None:
    if not isinstance(contract, Contract):
        raise InvalidArgument(f"contract={contract!r} must be a dpslice.contracts.Contract")


def _reaches_none(contract: Contract, reached: Iterable[Mode]) -> InvalidArgument:
    return InvalidArgument(
        f"contract {contract.name} reaches none of the modes asked for; it reaches "
        f"{', '.join(mode.name for mode in reached)}"
    )


def contract_layouts(
    contract: Contract,
    *,
    modes: Sequence[Mode] | None = None,
    gather_skipped: bool | None = False,
    max_count: int = MAX_COUNT,
    max_dp_size: int = MAX_DP_SIZE,
) -> st.SearchStrategy[DPLayout]:
    """The layouts ``contract``'s call site is reached in, built as the engine builds them.

    Args:
        contract: the call site (see :mod:`dpslice.contracts`).
        modes: narrow to these of its modes; all of them if ``None``.
        gather_skipped: ``True`` for skipped gathers only (the contract must
            reach them), ``False`` for full gathers, ``None`` for both where reached.
        max_count, max_dp_size: as for :func:`dp_layouts`.
    """
    _check_contract(contract)
    wanted = contract.modes if modes is None else _check_modes(modes)
    reached = [mode for mode in Mode if mode in wanted and contract.reaches(mode)]
    if gather_skipped is True:
        if not contract.skipped_gather:
            raise InvalidArgument(f"contract {contract.name} never skips the all-gather")
        reached = [mode for mode in reached if mode is not Mode.GRAPH_CAPTURE]
    if not reached:
        raise _reaches_none(contract, contract.modes)
    if gather_skipped is None and not contract.skipped_gather:
        gather_skipped = False
    return dp_layouts(
        modes=reached,
        max_dp_size=max_dp_size,
        max_count=max(max_count, contract.min_count),
        min_count=contract.min_count,
        attn_tp_sizes=contract.attn_tp_sizes,
        max_num_tokens_per_bs=contract.max_num_tokens_per_bs,
        gather_skipped=gather_skipped,
    )


def layouts_and_ranks(
    layouts: st.SearchStrategy[DPLayout] | None = None,
) -> st.SearchStrategy[tuple[DPLayout, int]]:
    """A layout and one of its ranks; the rank shrinks towards the last rank.

    A counterexample loses the ranks ahead of the one that fails (``counts=(0, 0, 0, 1)``
    at rank 3 shrinks to ``counts=(0, 1)`` at rank 1) and, from :func:`dp_layouts` or
    :func:`contract_layouts`, the ranks after it too.

    Args:
        layouts: where layouts come from; :func:`dp_layouts` by default.
    """
    if layouts is None:
        layouts = dp_layouts()
    elif not isinstance(layouts, st.SearchStrategy):
        raise InvalidArgument(
            f"layouts={layouts!r} must be a strategy, e.g. dp_layouts(max_count=64)"
        )
    plan = _PLANS.get(layouts)
    if plan is not None:
        return _drawn(plan.layout_and_rank)
    return _with_rank(layouts, _Built())


@dataclass(frozen=True)
class InvalidCall:
    """A slice call with exactly one defect, and the error it must raise.

    ``call`` may hold values of the wrong type on purpose; ``layout`` is the valid
    layout it derives from; ``kind`` is a key of :data:`DEFECT_KINDS`, ``defect``
    the defect itself.
    """

    layout: DPLayout
    call: SliceCall
    expected: type[InvalidInputError]
    defect: str
    kind: str = ""


def _bools() -> st.SearchStrategy[object]:
    return st.sampled_from([True, False])


def _non_integers() -> st.SearchStrategy[object]:
    return st.one_of(
        # The filter becomes min_value=0.0, which rules NaN out too.
        st.floats(allow_infinity=False).filter(lambda v: v >= 0),
        st.sampled_from(["3", "0", None, b"1"]),
    )


def _non_integer_extents() -> st.SearchStrategy[object]:
    # None is no extent at all: a prefill graph, not a wrong type.
    return _non_integers().filter(lambda value: value is not None)


class _Values:
    """What the builders of one :func:`invalid_calls` strategy draw a defect's value from."""

    def __init__(self, max_count: int) -> None:
        self.up_to_max_count = st.integers(1, max_count)
        self.sizes_below_one = st.integers(-4, 0)
        # By the bounds, (the builder, DP size) or the function that builds them.
        self.built = _Built()


@dataclass(frozen=True)
class _Site:
    """Where one defect goes: the valid call drawn, ``slot`` an entry of its count list."""

    draw: st.DrawFn
    layout: DPLayout
    call: SliceCall
    slot: int
    values: _Values

    @property
    def counts(self) -> list[int]:
        counts = self.call.global_num_tokens_cpu
        assert counts is not None
        return counts


#: How one kind of defect is put into a valid call: the call and the defect.
_Builder = Callable[[_Site], tuple[SliceCall, str]]


def _spoiled(
    where: str, value: Callable[[_Site], object], defect: str, also: dict[str, object], at: _Site
) -> tuple[SliceCall, str]:
    """``value(at)`` put at ``where``, a field or ``"count"`` (the site's slot), with ``also``.

    ``defect`` names it, formatted with the value.  Bound with :func:`_spoil` at import
    and run per draw.
    """
    spoiled = value(at)
    fields: dict[str, Any] = {where: spoiled, **also}
    if where == "count":
        counts = at.counts
        fields = {"global_num_tokens_cpu": [*counts[: at.slot], spoiled, *counts[at.slot + 1 :]]}
    return replace(at.call, **fields), defect.format(spoiled)


def _spoil(where: str, value: Callable[[_Site], object], defect: str, **also: object) -> _Builder:
    # Runs at import, where a mutant would never take effect; _spoiled runs per draw.
    return partial(_spoiled, where, value, defect, also)  # pragma: no mutate


def _wrong_type(where: str, make: Callable[[], st.SearchStrategy[object]]) -> _Builder:
    """A value of the wrong type at ``where`` (a count, or that field), from ``make``'s strategy."""
    defect = where + " is {!r}"  # pragma: no mutate: built at import, as in _spoil
    return _spoil(where, partial(_drawn_from, make), defect)  # pragma: no mutate


def _drawn_from(make: Callable[[], st.SearchStrategy[object]], at: _Site) -> object:
    return at.draw(at.values.built.get(make, make))


def _none(at: _Site) -> None:
    return None


def _over_extent(at: _Site) -> int:
    extent = at.call.graph_extent
    assert extent is not None
    return extent + at.draw(at.values.up_to_max_count)


def _below_one(at: _Site) -> int:
    return at.draw(at.values.sizes_below_one)


def _negative(at: _Site) -> int:
    return -at.draw(at.values.up_to_max_count)


def _tensor_counts(at: _Site) -> object:
    return torch.tensor(at.counts)


def _tensor_count(at: _Site) -> object:
    return torch.tensor(at.counts[at.slot])


def _tensor_rank(at: _Site) -> object:
    return torch.tensor(at.call.dp_rank)


def _wrong_length(at: _Site) -> tuple[SliceCall, str]:
    n = at.layout.dp_size
    lengths = at.values.built.get(
        (_wrong_length, n),
        lambda: st.sampled_from([length for length in range(n + 5) if length not in (1, n)]),
    )
    k = at.draw(lengths)
    bad = [at.counts[index % n] for index in range(k)]  # the counts again, cut or cycled
    return replace(at.call, global_num_tokens_cpu=bad), f"{k} counts for dp_size={n}"


def _out_of_range(at: _Site) -> int:
    n = at.layout.dp_size
    return at.draw(
        at.values.built.get(
            (_out_of_range, n), lambda: st.one_of(st.integers(n, n + 8), st.integers(-8, -1))
        )
    )


#: Every kind of defect :func:`invalid_calls` puts in a call, with the error it
#: must raise and how it is built, in the order it shrinks to.
_KINDS: dict[str, tuple[type[InvalidInputError], _Builder]] = {
    "counts None": (
        errors.CountsUnavailableError,
        _spoil("global_num_tokens_cpu", _none, "global_num_tokens_cpu is None"),
    ),
    "count over the extent": (
        errors.CountExceedsExtentError,
        _spoil("count", _over_extent, "count {} over the extent"),
    ),
    "count list of another length": (errors.CountsLengthError, _wrong_length),
    "dp_rank out of range": (
        errors.RankOutOfRangeError,
        _spoil("dp_rank", _out_of_range, "dp_rank = {}"),
    ),
    "dp_size below 1": (
        errors.InvalidDPSizeError,
        _spoil("dp_size", _below_one, "dp_size = {}", dp_rank=0),
    ),
    "negative count": (
        errors.NegativeCountError,
        _spoil("count", _negative, "count {}"),
    ),
    "bool count": (errors.NonIntegerError, _wrong_type("count", _bools)),
    "bool dp_rank": (errors.NonIntegerError, _wrong_type("dp_rank", _bools)),
    "bool dp_size": (errors.NonIntegerError, _wrong_type("dp_size", _bools)),
    "bool graph_extent": (errors.NonIntegerError, _wrong_type("graph_extent", _bools)),
    "non-integer count": (errors.NonIntegerError, _wrong_type("count", _non_integers)),
    "non-integer dp_rank": (errors.NonIntegerError, _wrong_type("dp_rank", _non_integers)),
    "non-integer dp_size": (errors.NonIntegerError, _wrong_type("dp_size", _non_integers)),
    "non-integer graph_extent": (
        errors.NonIntegerError,
        _wrong_type("graph_extent", _non_integer_extents),
    ),
    "tensor counts": (
        errors.TensorInputError,
        _spoil("global_num_tokens_cpu", _tensor_counts, "a tensor as counts"),
    ),
    "tensor count": (
        errors.TensorInputError,
        _spoil("count", _tensor_count, "a tensor as count"),
    ),
    "tensor dp_rank": (
        errors.TensorInputError,
        _spoil("dp_rank", _tensor_rank, "a tensor as dp_rank"),
    ),
    "negative graph extent": (
        errors.InvalidGraphExtentError,
        _spoil("graph_extent", _negative, "graph_extent = {}"),
    ),
}

#: Each kind of defect and the error a validating slice raises for it.
DEFECT_KINDS: dict[str, type[InvalidInputError]] = {
    kind: cause for kind, (cause, _) in _KINDS.items()
}

#: Every error :func:`invalid_calls` can aim at, in the order it shrinks to.
INVALID_CAUSES: tuple[type[InvalidInputError], ...] = tuple(dict.fromkeys(DEFECT_KINDS.values()))

#: Kinds that only a decode-graph replay can carry: they concern its extent.
_REPLAY_ONLY = frozenset(kind for kind in DEFECT_KINDS if "extent" in kind)

#: Modes an invalid call is derived from by default: those with CPU counts.
_CALL_MODES = (Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY)


def _base_layouts(
    kind: str, max_count: int, modes: tuple[Mode, ...], contract: Contract | None
) -> st.SearchStrategy[tuple[DPLayout, int]]:
    """The valid layouts an invalid call of ``kind`` is derived from."""
    chosen = [Mode.GRAPH_REPLAY] if kind in _REPLAY_ONLY else modes
    skipped = False if kind == "count list of another length" else None
    options: dict[str, Any] = {"modes": chosen, "max_count": max_count, "max_dp_size": 16}
    if contract is not None:
        return layouts_and_ranks(contract_layouts(contract, gather_skipped=skipped, **options))
    return layouts_and_ranks(dp_layouts(gather_skipped=skipped, **options))


@st.composite
def _invalid_call(
    draw: st.DrawFn, kind: str, base: st.SearchStrategy[tuple[DPLayout, int]], values: _Values
) -> InvalidCall:
    layout, rank = draw(base)
    call = layout.call(rank)
    counts = call.global_num_tokens_cpu
    assert counts is not None
    slot = draw(values.built.integers(0, len(counts) - 1))
    cause, build = _KINDS[kind]
    call, defect = build(_Site(draw, layout, call, slot, values))
    return InvalidCall(layout=layout, call=call, expected=cause, defect=defect, kind=kind)


def invalid_calls(
    *,
    causes: Sequence[type[InvalidInputError]] = INVALID_CAUSES,
    max_count: int = 1024,
    kinds: Sequence[str] | None = None,
    modes: Sequence[Mode] | None = None,
    contract: Contract | None = None,
) -> st.SearchStrategy[InvalidCall]:
    """Slice calls with exactly one defect, each labelled with the error it must raise.

    Args:
        causes: the errors to aim at, a subset of :data:`INVALID_CAUSES`.
        max_count: the largest count of the valid layout each call derives from.
        kinds: the kinds of defect to put in (keys of :data:`DEFECT_KINDS`);
            every kind of the ``causes`` if ``None``.
        modes: the layouts calls are derived from; capture has no counts to
            spoil, and the extent's defects need :attr:`Mode.GRAPH_REPLAY`.
            By default SUM_LEN, MAX_LEN and GRAPH_REPLAY, or the contract's.
        contract: derive calls from the layouts this contract reaches
            (see :func:`contract_layouts`).

    Draws a kind (shrinking to the first listed), a valid layout and rank, then
    puts the defect into the call the engine would make for them.
    """
    choose = "choose from dpslice.strategies."
    what = "errors from INVALID_CAUSES"
    _check_listed("causes", causes, type, what, INVALID_CAUSES, choose + "INVALID_CAUSES")
    _check_int("max_count", max_count, 1)
    if contract is not None:
        _check_contract(contract)
    if modes is None:
        modes = _CALL_MODES if contract is None else contract.counted_modes
    chosen_modes = tuple(mode for mode in _check_modes(modes) if mode is not Mode.GRAPH_CAPTURE)
    if not chosen_modes:
        raise InvalidArgument("modes=[Mode.GRAPH_CAPTURE] has no CPU counts to put a defect in")
    if contract is not None:
        chosen_modes = tuple(mode for mode in chosen_modes if contract.reaches(mode))
        if not chosen_modes:
            raise _reaches_none(contract, contract.counted_modes)
    if kinds is None:
        wanted = [kind for kind, cause in DEFECT_KINDS.items() if cause in causes]
    else:
        what = "DEFECT_KINDS keys"
        _check_listed("kinds", kinds, str, what, DEFECT_KINDS, choose + "DEFECT_KINDS")
        wanted = [kind for kind in kinds if DEFECT_KINDS[kind] in causes]
    if Mode.GRAPH_REPLAY not in chosen_modes:
        wanted = [kind for kind in wanted if kind not in _REPLAY_ONLY]
    if not wanted:
        raise InvalidArgument(
            "no kind of defect fits these causes, kinds and modes (a defect of the graph "
            "extent needs Mode.GRAPH_REPLAY among the modes)"
        )
    values = _Values(max_count)
    per_kind = [
        _invalid_call(kind, _base_layouts(kind, max_count, chosen_modes, contract), values)
        for kind in wanted
    ]
    # A choice of kind shrinking to the first; none for a single kind.
    return st.one_of(per_kind)
