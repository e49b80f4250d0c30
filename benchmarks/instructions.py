"""Instructions per reference slice call, counted by valgrind's callgrind.

A shared machine's clock drifts (here the same ``timeit`` ranged from 0.89 to
1.43 us within an hour); the instructions a call executes do not.  For each
benchmark layout (``layouts.py``: DP 1, 8 and 64, eager and CUDA-graph replay,
the last rank) this runs a child Python under callgrind twice, once making
``--calls`` calls and once none; the difference over ``--calls`` is one call,
with the calling loop and its keyword arguments included::

    python benchmarks/instructions.py                  # six cases, 20,000 calls each
    python benchmarks/instructions.py --json out.json  # also save the counts

Needs ``valgrind`` on ``PATH``; each case takes a few seconds.  Counts compare
code on one interpreter build: another Python version gives other counts.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import re
import shutil
import subprocess
import sys
from itertools import repeat
from pathlib import Path

from layouts import DP_SIZES, bench_layout

from dpslice import Mode, dp_local_slice

MODES = {"eager": Mode.SUM_LEN, "graph": Mode.GRAPH_REPLAY}
_COLLECTED = re.compile(r"Collected : (\d+)")


def _call_many(dp_size: int, mode: str, calls: int) -> None:
    call = bench_layout(dp_size, MODES[mode]).call(dp_size - 1)
    counts, rank, graph, extent = (
        call.global_num_tokens_cpu,
        call.dp_rank,
        call.can_run_graph,
        call.graph_extent,
    )
    gc.disable()
    for _ in repeat(None, calls):
        dp_local_slice(counts, rank, dp_size=dp_size, can_run_graph=graph, graph_extent=extent)


def _instructions(dp_size: int, mode: str, calls: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        str(dp_size),
        mode,
        str(calls),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_call(dp_size: int, mode: str, calls: int) -> int:
    """Instructions of one call: (``calls`` calls - none) / ``calls``, rounded."""
    return round((_instructions(dp_size, mode, calls) - _instructions(dp_size, mode, 0)) / calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per counted run")
    parser.add_argument("--json", type=Path, help="also write the counts here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        dp_size, mode, calls = args.child
        _call_many(int(dp_size), mode, int(calls))
        return 0
    if args.calls < 1:
        parser.error(f"--calls {args.calls}: count at least one call")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not on PATH (apt install valgrind)")
    results = {}
    print(f"instructions per dp_local_slice call, Python {platform.python_version()}")
    for mode in MODES:
        for dp_size in DP_SIZES:
            case = f"dp{dp_size}-{mode}"
            results[case] = per_call(dp_size, mode, args.calls)
            print(f"{case:>12} {results[case]:>8,}", flush=True)
    if args.json is not None:
        machine = {"python": platform.python_version(), "machine": platform.machine()}
        args.json.write_text(json.dumps({"machine": machine, "instructions": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
