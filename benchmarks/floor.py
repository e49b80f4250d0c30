"""The reference slice against its floor, from a benchmark run's JSON.

Usage::

    python benchmarks/floor.py RESULTS.json [--target 1.2]

``RESULTS.json`` is what ``python -m pytest benchmarks -k reference_vs_bare
--benchmark-json=RESULTS.json`` wrote (``test_reference_vs_bare`` on a GPU,
``test_reference_vs_bare_cpu`` anywhere).  For each layout, queue depth and host
state it prints the medians of the paths and their ratios to ``bare``, the
slice of precomputed ints: every ratio is taken within the one run the JSON
holds.  ``reference / bare`` is the target's ratio; ``unchecked / bare`` is the
arithmetic alone, no check, no call: what bounds any reference from below;
``no checks / bare`` is that arithmetic behind the reference's signature and
``DPSlice``, checking nothing: what bounds any reference of that signature
(runs before it had that path show no value there).  ``reference / unchecked``
is what the call and the checks add to the arithmetic.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The benchmarks this script reads, and where each runs.
BENCHMARKS = {"test_reference_vs_bare": "GPU", "test_reference_vs_bare_cpu": "CPU"}
#: The paths every row needs; ``no_checks``, which older runs lack, is shown where timed.
PATHS = ("reference", "unchecked", "bare")


def _key(bench: dict[str, Any]) -> tuple[str, int, str, float, str] | None:
    where = BENCHMARKS.get(bench["name"].partition("[")[0])
    if where is None:
        return None
    info = bench["extra_info"]
    return (where, info["dp_size"], info["mode"], info.get("queue_ms", -1.0), info.get("host", ""))


def medians(results: dict[str, Any]) -> dict[tuple[str, int, str, float, str], dict[str, float]]:
    """``{(where, dp_size, mode, queue_ms, host): {path: median seconds}}``.

    ``queue_ms`` is -1 and ``host`` empty for the CPU benchmark, which has neither.
    """
    table: dict[tuple[str, int, str, float, str], dict[str, float]] = {}
    for bench in results["benchmarks"]:
        key = _key(bench)
        if key is not None:
            table.setdefault(key, {})[bench["extra_info"]["path"]] = bench["stats"]["median"]
    return table


def describe_machine(results: dict[str, Any]) -> str:
    info = results["machine_info"]
    gpu = info.get("gpu")
    cpu = (info.get("cpu") or {}).get("brand_raw", "unknown CPU")
    card = f"{gpu['name']} (driver's CUDA {gpu.get('driver_cuda', '?')})" if gpu else "no GPU"
    return (
        f"{card}, {cpu}, Python {info.get('python_version')}, torch {info.get('torch')} "
        f"(CUDA {info.get('cuda')}), dpslice {info.get('dpslice')}"
    )


def floor_table(results: dict[str, Any], target: float) -> str:
    """Markdown: the medians per case, their ratios to ``bare`` and reference / unchecked."""
    lines = [
        f"| where | layout | GPU queue | host | bare | unchecked | no checks | reference "
        f"| unchecked / bare | no checks / bare | reference / bare "
        f"| reference / unchecked | <= {target:g}x |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for (where, dp_size, mode, queue_ms, host), paths in sorted(medians(results).items()):
        if not all(path in paths for path in PATHS):
            continue
        bare = paths["bare"]
        queue = "" if queue_ms < 0 else ("idle" if queue_ms == 0 else f"{queue_ms:g} ms")
        ratio = paths["reference"] / bare
        met = "yes" if ratio <= target else "no"
        no_checks = paths.get("no_checks")
        lines.append(
            f"| {where} | DP {dp_size} {mode} | {queue} | {host} | {_us(bare)} "
            f"| {_us(paths['unchecked'])} | {'' if no_checks is None else _us(no_checks)} "
            f"| {_us(paths['reference'])} | {paths['unchecked'] / bare:.2f}x "
            f"| {'' if no_checks is None else f'{no_checks / bare:.2f}x'} | {ratio:.2f}x "
            f"| {paths['reference'] / paths['unchecked']:.2f}x | {met} |"
        )
    return "\n".join(lines)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} us"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="benchmark JSON (--benchmark-json)")
    parser.add_argument(
        "--target", type=float, default=1.2, help="the reference / bare ratio to meet (1.2)"
    )
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    table = floor_table(results, args.target)
    if table.count("\n") < 2:
        raise SystemExit(f"{args.results}: no reference_vs_bare benchmarks with all three paths")
    print(describe_machine(results))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
