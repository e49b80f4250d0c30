"""Layouts per second of ``dpslice check`` in two or more source trees, in one run.

Each round runs the same command once in every tree, in turn, so that the
machine's drift (docs/records/README.md) falls on all of them alike; the medians
over the rounds are compared with the first tree's::

    git worktree add --detach /tmp/dpslice-before <commit before the change>
    python scripts/layout_throughput.py /tmp/dpslice-before . --rounds 7

A tree's package is imported from the tree itself (``PYTHONPATH``), by the
command and by its worker, and each run is checked to have done so.  The
command runs in a scratch directory, one worker, with the default battery:
``dpslice check --max-examples 500 --seed 1`` unless ``--args`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_SUMMARY = re.compile(r"([\d,]+) layouts checked in ([\d.]+) s \(([\d,]+) layouts/s\)")


def run_once(tree: Path, args: list[str], scratch: str) -> tuple[int, float, float]:
    """Layouts checked, the check's seconds and layouts a second, as ``dpslice check``
    reports them (the rate from the unrounded time)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    where = subprocess.run(
        [sys.executable, "-c", "import dpslice; print(dpslice.__file__)"],
        env=env,
        cwd=scratch,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree}: dpslice came from {where}")
    done = subprocess.run(
        [sys.executable, "-m", "dpslice", "check", *args],
        env=env,
        cwd=scratch,
        capture_output=True,
        text=True,
    )
    found = _SUMMARY.search(done.stdout)
    if found is None:
        raise SystemExit(
            f"{tree}: no summary line (exit {done.returncode}):\n{done.stdout[-2000:]}"
        )
    return int(found[1].replace(",", "")), float(found[2]), float(found[3].replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", type=Path, help="source trees; the first is the base")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--args", default="--max-examples 500 --seed 1", help="dpslice check's arguments"
    )
    options = parser.parse_args(argv)
    args = options.args.split()
    rates: dict[Path, list[float]] = {tree: [] for tree in options.trees}
    with tempfile.TemporaryDirectory(prefix="dpslice-throughput-") as scratch:
        for round_ in range(options.rounds):
            for tree in options.trees:
                layouts, seconds, rate = run_once(tree, args, scratch)
                rates[tree].append(rate)
                print(
                    f"round {round_ + 1}: {tree}: {layouts} layouts in {seconds} s "
                    f"({rate:,.0f} layouts/s)",
                    flush=True,
                )
    base = statistics.median(rates[options.trees[0]])
    print(f"\ndpslice check {options.args}, {options.rounds} rounds, medians:")
    for tree, values in rates.items():
        median = statistics.median(values)
        low, high = min(values), max(values)
        print(
            f"  {tree}: {median:,.0f} layouts/s (range {low:,.0f} to {high:,.0f}), "
            f"{median / base:.2f}x the first"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
