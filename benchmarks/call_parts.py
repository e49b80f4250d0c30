"""What one ``dp_local_slice`` call spends beyond the arithmetic, part by part.

The floor benchmark (``test_reference_vs_bare``) compares the reference with
``unchecked``: the same ints computed inline, no call, no check.  This script
splits the difference into parts by timing five statements that each add one
part to the one before, on the benchmark's calls (``layouts.py``: the last rank,
eager and CUDA-graph replay)::

    python benchmarks/call_parts.py                 # DP 8 and 64
    python benchmarks/call_parts.py --rounds 200 --dp-sizes 1 8 64

1. ``unchecked``: ``start = sum(counts[:rank])`` (``rank * extent`` under
   replay) and ``length = counts[rank]``, inline;
2. ``+ call``: a function of ``dp_local_slice``'s signature, called with the
   same keyword arguments, that returns the same arithmetic as a plain tuple,
   unpacked into ``start, length``;
3. ``+ DPSlice``: the same returning a ``DPSlice`` (built, unpacked, freed);
4. ``+ scalar checks``: ``dp_local_slice`` with its loops over the counts taken
   out (its code, rewritten by ``ast``: each ``for`` replaced by its ``else``),
   so the types of the list, rank, size and extent, the rank's range, the
   list's length and the flag are checked, and no count;
5. ``reference``: ``dp_local_slice`` itself, unpacked as the benchmark does.

The ns per call are the best of ``--rounds`` rounds, the statements interleaved
in a new order each round, on the interpreter that runs the script; timeit
switches the garbage collector off while it times.  Each row's increment is
the part it adds.  Does not import torch.
"""

from __future__ import annotations
import __future__

import argparse
import ast
import inspect
import platform
import sys
import textwrap
import timeit
from collections.abc import Callable, Sequence
from typing import Any

from count_checks import best_of
from layouts import bench_layout

from dpslice import DPSlice, Mode, dp_local_slice

MODES = {"eager": Mode.SUM_LEN, "graph": Mode.GRAPH_REPLAY}
_NEW_TUPLE = tuple.__new__
_CALL = (
    "start, length = {function}"
    "(counts, rank, dp_size=size, can_run_graph=graph, graph_extent=extent)"
)

#: Label of each statement, in order; each adds one part to the one before.
STEPS = {
    "unchecked": "unchecked arithmetic, inline",
    "call": "+ call with the keywords, a plain tuple unpacked",
    "named": "+ the result a DPSlice (built, unpacked, freed)",
    "scalars": "+ checks of list type and length, rank, size, flag, extent",
    "reference": "+ the loop over the counts: dp_local_slice",
}


def plain_call(
    counts: Any,
    dp_rank: int,
    *,
    dp_size: int,
    can_run_graph: bool = False,
    graph_extent: int | None = None,
) -> tuple[int, int]:
    """The reference's arithmetic behind its signature: no check, a plain tuple."""
    if can_run_graph is True and graph_extent is not None:
        return (dp_rank * graph_extent, counts[dp_rank])
    return (sum(counts[:dp_rank]), counts[dp_rank])


def named_call(
    counts: Any,
    dp_rank: int,
    *,
    dp_size: int,
    can_run_graph: bool = False,
    graph_extent: int | None = None,
) -> DPSlice:
    """:func:`plain_call` returning a ``DPSlice``, built as the reference builds it."""
    if can_run_graph is True and graph_extent is not None:
        return _NEW_TUPLE(DPSlice, (dp_rank * graph_extent, counts[dp_rank]))
    return _NEW_TUPLE(DPSlice, (sum(counts[:dp_rank]), counts[dp_rank]))


class _LoopsToElse(ast.NodeTransformer):
    """Replaces each ``for`` loop by its ``else`` block: the loop checked nothing."""

    def __init__(self) -> None:
        self.loops = 0

    def visit_For(self, node: ast.For) -> list[ast.stmt]:
        self.loops += 1
        return [self.visit(statement) for statement in node.orelse]


def without_count_loops(function: Callable[..., DPSlice]) -> Callable[..., DPSlice]:
    """Module-level ``function`` recompiled with each ``for`` replaced by its ``else``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    rewriter = _LoopsToElse()
    tree = ast.fix_missing_locations(rewriter.visit(tree))
    if rewriter.loops == 0:
        raise SystemExit(f"{function.__qualname__} has no loop to take out")
    namespace = dict(vars(sys.modules[function.__module__]))
    source_file = inspect.getsourcefile(function) or "<reference>"
    flags = __future__.annotations.compiler_flag  # as the module compiled it
    exec(compile(tree, source_file, "exec", flags=flags, dont_inherit=True), namespace)
    rewritten: Callable[..., DPSlice] = namespace[function.__name__]
    return rewritten


def _statements(mode: str) -> dict[str, str]:
    arithmetic = "rank * extent" if mode == "graph" else "sum(counts[:rank])"
    return {
        "unchecked": f"start = {arithmetic}; length = counts[rank]",
        "call": _CALL.format(function="plain_call"),
        "named": _CALL.format(function="named_call"),
        "scalars": _CALL.format(function="scalars_checked"),
        "reference": _CALL.format(function="dp_local_slice"),
    }


def time_parts(dp_size: int, mode: str, rounds: int) -> dict[str, float]:
    """ns per statement of :data:`STEPS` on the benchmark call of ``dp_size`` ranks in ``mode``."""
    call = bench_layout(dp_size, MODES[mode]).call(dp_size - 1)
    scalars_checked = without_count_loops(dp_local_slice)
    namespace = {
        "counts": call.global_num_tokens_cpu,
        "rank": call.dp_rank,
        "size": call.dp_size,
        "graph": call.can_run_graph,
        "extent": call.graph_extent,
        "plain_call": plain_call,
        "named_call": named_call,
        "scalars_checked": scalars_checked,
        "dp_local_slice": dp_local_slice,
    }
    # Every statement computes the same slice, the one the reference returns.
    args = (call.global_num_tokens_cpu, call.dp_rank)
    kwargs = {
        "dp_size": call.dp_size,
        "can_run_graph": call.can_run_graph,
        "graph_extent": call.graph_extent,
    }
    expected = tuple(dp_local_slice(*args, **kwargs))
    for function in (plain_call, named_call, scalars_checked):
        assert tuple(function(*args, **kwargs)) == expected, function
    statements = _statements(mode)
    timers = {step: timeit.Timer(code, globals=namespace) for step, code in statements.items()}
    return best_of(timers, rounds)


def parts_table(timings: dict[str, dict[str, float]]) -> str:
    """Markdown: per case, each statement's ns and the part it adds (in parentheses)."""
    cases = list(timings)
    lines = [
        f"| part | {' | '.join(cases)} |",
        f"| --- |{' ---: |' * len(cases)}",
    ]
    previous: dict[str, float] = {}
    for step, label in STEPS.items():
        cells = []
        for case in cases:
            value = timings[case][step]
            added = "" if step == "unchecked" else f" (+{value - previous[case]:,.0f})"
            cells.append(f"{value:,.0f}{added}")
            previous[case] = value
        lines.append(f"| {label} | {' | '.join(cells)} |")
    added = " | ".join(
        f"{timings[case]['reference'] - timings[case]['unchecked']:,.0f}" for case in cases
    )
    lines.append(f"| reference - unchecked: all the parts | {added} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="rounds per statement (60)")
    parser.add_argument("--dp-sizes", type=int, nargs="+", default=[8, 64])
    args = parser.parse_args(argv)
    timings = {
        f"DP {dp_size} {mode}": time_parts(dp_size, mode, args.rounds)
        for dp_size in args.dp_sizes
        for mode in MODES
    }
    print(f"ns per call, best of {args.rounds} rounds, Python {platform.python_version()}")
    print(parts_table(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
