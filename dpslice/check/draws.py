"""The layouts properties draw, each with the text ``--list`` shows for it.

Every built-in property draws from :func:`dpslice.strategies.dp_layouts`; these
helpers pair each strategy with the expression that reads as its source, so
``dpslice check --list`` and the docs say exactly what was drawn, and
:func:`register_drawn` registers a property that draws it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from dpslice.check.registry import Counterexample, Property, register
from dpslice.check.target import Target
from dpslice.layout import DPLayout, Mode
from dpslice.strategies import dp_layouts, layouts_and_ranks

__all__ = [
    "EAGER_AND_REPLAY",
    "SMALL_COUNT",
    "SMALL_DP_SIZE",
    "Drawn",
    "RankExample",
    "layouts",
    "register_drawn",
    "with_ranks",
]

#: Bounds of the layouts whose gathered buffer is materialised (at most ~1,600 rows).
SMALL_COUNT, SMALL_DP_SIZE = 32, 16

#: The modes in which a rank has CPU counts to slice by (capture has none).
EAGER_AND_REPLAY = (Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY)

#: A layout and one of its ranks: what most properties draw.
RankExample = tuple[DPLayout, int]
#: How a strategy reads in ``--list``, and the strategy.
Drawn = tuple[str, st.SearchStrategy[Any]]


def layouts(*modes: Mode, gather_skipped: bool | None = None, small: bool = True) -> Drawn:
    """Layouts in ``modes``; ``small`` ones can be materialised (see :data:`SMALL_COUNT`)."""
    names = ", ".join(f"Mode.{mode.name}" for mode in modes)
    text = f"modes=[{names}]"
    if gather_skipped is not None:
        text += f", gather_skipped={gather_skipped}"
    if not small:
        return f"dp_layouts({text})", dp_layouts(modes=modes, gather_skipped=gather_skipped)
    text += f", max_count={SMALL_COUNT}, max_dp_size={SMALL_DP_SIZE}"
    drawn = dp_layouts(
        modes=modes,
        gather_skipped=gather_skipped,
        max_count=SMALL_COUNT,
        max_dp_size=SMALL_DP_SIZE,
    )
    return f"dp_layouts({text})", drawn


def with_ranks(drawn: Drawn) -> Drawn:
    """The layouts of ``drawn``, each with one of its ranks (shrinking to rank 0)."""
    text, strategy = drawn
    return f"layouts_and_ranks({text})", layouts_and_ranks(strategy)


def register_drawn(
    name: str,
    statement: str,
    drawn: Drawn,
    check: Callable[[Target, Any], Counterexample | None],
    *,
    exercises: frozenset[str] = frozenset(),
    requires: Callable[[Target], str | None] | None = None,
    describe: Callable[[Target], str] | None = None,
) -> None:
    """Register a property that draws ``drawn`` whatever the target (see :class:`Property`)."""
    draws, strategy = drawn
    register(
        Property(
            name=name,
            statement=statement,
            draws=draws,
            strategy=lambda _target: strategy,
            check=check,
            exercises=exercises,
            requires=requires,
            describe=describe,
        )
    )
