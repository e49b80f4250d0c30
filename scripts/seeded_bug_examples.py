"""Layouts the check draws before it meets each seeded bug, over several seeds.

For every mutation of ``tests/test_check_seeded_bugs.py`` this runs the
property that catches it, once per seed, and counts the layouts checked up to
and including the first failing one (shrinking not counted: the run stops
there).  A property with kinds (``invalid_inputs_refused``) searches each kind
apart; the count is that of the kind that meets the bug soonest, in its own
search.  Run it with the tree to measure first on the path::

    PYTHONPATH=/tmp/dpslice-before python scripts/seeded_bug_examples.py --seeds 20
    PYTHONPATH=. python scripts/seeded_bug_examples.py --seeds 20

It prints one line per mutation: the median count, its range, and how many
seeds met the bug within ``--budget`` layouts a search.  ``--rate`` prints
instead the share of the layouts of whole searches that fail (the runner's
first layouts, the same in every search, then weigh less).  Those bugs are met in
the first layouts of any search, so two rare ones follow (``--rare``, the
targets of "Did it find more?" in docs/records/check.md): the reference with
its start one row off only when the three ranks ahead of the rank have no
tokens, or only when ``dp_size`` is 13 and the rank has none, under
``ranks_disjoint_in_bounds``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

_RARE = """
from dpslice.reference import dp_local_slice


def _shifted(counts, dp_rank, dp_size, can_run_graph, graph_extent, wrong):
    got = dp_local_slice(
        counts, dp_rank, dp_size=dp_size, can_run_graph=can_run_graph, graph_extent=graph_extent
    )
    return (got[0] + 1, got[1]) if wrong else got


def zeros_ahead(global_num_tokens_cpu, dp_rank, dp_size, can_run_graph=False, graph_extent=None):
    counts = global_num_tokens_cpu
    wrong = counts is not None and dp_rank >= 3 and len(counts) == dp_size and not any(
        counts[dp_rank - 3 : dp_rank]
    )
    return _shifted(counts, dp_rank, dp_size, can_run_graph, graph_extent, wrong)


def dp13_idle(global_num_tokens_cpu, dp_rank, dp_size, can_run_graph=False, graph_extent=None):
    counts = global_num_tokens_cpu
    wrong = counts is not None and dp_size == 13 and counts[dp_rank % len(counts)] == 0
    return _shifted(counts, dp_rank, dp_size, can_run_graph, graph_extent, wrong)
"""

#: The rare bugs: (name, function in _RARE, the property that meets them).
_RARE_BUGS = (
    ("three-ranks-ahead-idle (rare)", "zeros_ahead", "ranks_disjoint_in_bounds"),
    ("dp-size-13-rank-idle (rare)", "dp13_idle", "ranks_disjoint_in_bounds"),
)


class _Met(BaseException):
    """Stops a search at its first failing layout (not an Exception: nothing catches it)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0 .. N-1")
    parser.add_argument(
        "--budget", type=int, default=500, help="layouts a search may check (the check's default)"
    )
    parser.add_argument("--rare", action="store_true", help="the two rare bugs too")
    parser.add_argument("--rate", action="store_true", help="the share of layouts that fail")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("names", nargs="*", help="mutations to run (all by default)")
    options = parser.parse_args(argv)

    import dpslice
    from dpslice.check import runner
    from dpslice.check.registry import select
    from dpslice.check.target import load_target

    # The tree's own tests, next to its package.
    sys.path.insert(0, str(Path(dpslice.__file__).resolve().parents[1]))
    from tests.test_check_seeded_bugs import MUTATIONS, mutant

    searches: list[int | None] = []  # per search: layouts up to the first failure, or None
    shares: list[float] = []  # per search, with --rate: the share of layouts that failed
    plain_search = runner._search

    def counting_search(prop: Any, strategy: Any, target: Any, max_examples: int, seed: int) -> Any:
        checked = failed = 0

        def check(target: Any, example: Any) -> Any:
            nonlocal checked, failed
            checked += 1
            found = prop.check(target, example)
            if found is not None and options.rate:
                failed += 1
                return None
            if found is not None:
                raise _Met
            return found

        if options.rate:
            plain_search(replace(prop, check=check), strategy, target, max_examples, seed)
            shares.append(failed / max(1, checked))
            return runner._Search()

        try:
            plain_search(replace(prop, check=check), strategy, target, max_examples, seed)
        except _Met:
            searches.append(checked)
        else:
            searches.append(None)
        return runner._Search()

    runner._search = counting_search  # type: ignore[assignment]
    seeds = range(options.first_seed, options.first_seed + options.seeds)
    print(
        f"dpslice from {Path(dpslice.__file__).parent}; seeds {seeds.start}..{seeds.stop - 1}, "
        f"up to {options.budget} layouts a search"
    )
    with tempfile.TemporaryDirectory(prefix="dpslice-seeded-") as scratch:
        rare = Path(scratch) / "rare.py"
        rare.write_text(_RARE)
        bugs = [(name, MUTATIONS[name].caught_by, None) for name in options.names or MUTATIONS]
        if options.rare:
            bugs += [
                (name, caught_by, f"{rare}:{function}") for name, function, caught_by in _RARE_BUGS
            ]
        for name, caught_by, spec in bugs:
            if spec is None:
                folder = Path(scratch) / name
                folder.mkdir()
                spec = mutant(folder, name)
            target = load_target(spec, device="cpu")
            (prop,) = select([caught_by])
            counts = []
            rates = []
            for seed in seeds:
                searches.clear()
                shares.clear()
                runner.run_property(prop, target, max_examples=options.budget, seed=seed)
                met = [count for count in searches if count is not None]
                counts.append(min(met) if met else None)
                rates.append(max(shares, default=0.0))
            if options.rate:
                print(
                    f"{name:34s} {caught_by:24s} failing share median "
                    f"{statistics.median(rates):6.1%}  range {min(rates):.1%} to {max(rates):.1%}",
                    flush=True,
                )
                continue
            caught = [count for count in counts if count is not None]
            median = statistics.median(caught) if caught else float("nan")
            spread = f"{min(caught)} to {max(caught)}" if caught else "-"
            print(
                f"{name:34s} {caught_by:24s} median {median:7.1f}  "
                f"range {spread:12s} met {len(caught)}/{len(counts)}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
