"""Properties that draw the contract's layouts (:func:`drawn`), with what ``--list`` shows."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hypothesis import strategies as st

from dpslice.check.registry import Counterexample, Property, Tier
from dpslice.check.target import Target
from dpslice.layout import DPLayout, Mode
from dpslice.strategies import contract_layouts, layouts_and_ranks

__all__ = ["COUNTED", "SMALL_COUNT", "SMALL_DP_SIZE", "RankExample", "drawn"]

#: Bounds of the layouts whose gathered buffer is materialised (at most ~1,600 rows).
SMALL_COUNT, SMALL_DP_SIZE = 32, 16

#: The modes in which a rank has counts to slice by (capture has none).
COUNTED = tuple(mode for mode in Mode if mode is not Mode.GRAPH_CAPTURE)

#: A layout and one of its ranks: what most properties draw.
RankExample = tuple[DPLayout, int]


def _text(
    modes: tuple[Mode, ...] | None, gather_skipped: bool | None, small: bool, per_rank: bool
) -> str:
    text = "contract"
    if modes is not None:
        text += ", modes=[" + ", ".join(f"Mode.{mode.name}" for mode in modes) + "]"
    if gather_skipped is not False:
        text += f", gather_skipped={gather_skipped}"
    if small:
        text += f", max_count={SMALL_COUNT}, max_dp_size={SMALL_DP_SIZE}"
    text = f"contract_layouts({text})"
    return f"layouts_and_ranks({text})" if per_rank else text


def _skips_gathers(target: Target) -> str | None:
    if target.contract.skipped_gather:
        return None
    return f"the {target.contract.name} contract never skips the all-gather"


def drawn(
    name: str,
    statement: str,
    check: Callable[[Target, Any], Counterexample | None],
    *,
    modes: Iterable[Mode] | None,
    per_rank: bool = True,
    gather_skipped: bool | None = False,
    small: bool = True,
    exercises: frozenset[str] = frozenset(),
    requires: Callable[[Target], str | None] | None = None,
    describe: Callable[[Target], str] | None = None,
    tier: Tier = Tier.HAZARD,
) -> Property[Any]:
    """A property that draws the contract's layouts in ``modes`` (``None``: all it reaches).

    ``per_rank`` draws a layout and one of its ranks, else a layout alone;
    ``small`` bounds them (:data:`SMALL_COUNT`); ``gather_skipped`` as for
    :func:`~dpslice.strategies.contract_layouts`: ``True`` requires a contract that skips.
    """
    chosen = None if modes is None else tuple(mode for mode in Mode if mode in frozenset(modes))
    sizes = {"max_count": SMALL_COUNT, "max_dp_size": SMALL_DP_SIZE} if small else {}

    def strategy(target: Target) -> st.SearchStrategy[Any]:
        layouts = contract_layouts(
            target.contract, modes=chosen, gather_skipped=gather_skipped, **sizes
        )
        return layouts_and_ranks(layouts) if per_rank else layouts

    if gather_skipped is True:
        assert requires is None, "a skipped-gather property requires the contract to skip"
        requires = _skips_gathers
    return Property(
        name=name,
        statement=statement,
        draws=_text(chosen, gather_skipped, small, per_rank),
        strategy=strategy,
        check=check,
        exercises=exercises,
        requires=requires,
        describe=describe,
        tier=tier,
        modes=frozenset(chosen or ()),
    )
