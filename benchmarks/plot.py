"""Plot host time against queued GPU work from a GPU benchmark run's JSON.

Usage::

    python benchmarks/plot.py RESULTS.json [-o docs/img/host_time_vs_queue.png]

``RESULTS.json`` is what ``python -m pytest benchmarks --benchmark-json=RESULTS.json``
wrote on a machine with a GPU; the plot is made wherever matplotlib is
installed (``pip install matplotlib``), so the GPU machine needs none.  It also
prints the table docs/benchmarks.md quotes: medians per path and queue depth,
and their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The parametrized GPU benchmark this plot reads (benchmarks/test_bench_gpu.py).
QUEUE_BENCHMARK = "test_host_time_vs_queue"
PATHS = {"reference": "reference slice (Python ints)", "tensor": "GPU-tensor path (tensor bounds)"}
#: Where an idle GPU (no queued work) sits on the log x axis.
IDLE_X = 0.02


def queue_points(
    results: dict[str, Any], host: str = "cold"
) -> dict[str, list[tuple[float, dict[str, float]]]]:
    """``{path: [(queue_ms, stats), ...]}`` sorted by queue depth, from a benchmark JSON.

    ``host`` picks the host state the benchmark ran in (runs saved before there
    were two states count as ``cold``).
    """
    points: dict[str, list[tuple[float, dict[str, float]]]] = {path: [] for path in PATHS}
    for bench in results["benchmarks"]:
        if bench["name"].partition("[")[0] != QUEUE_BENCHMARK:
            continue
        info = bench["extra_info"]
        if info.get("host", "cold") != host:
            continue
        points[info["path"]].append((float(info["queue_ms"]), bench["stats"]))
    for series in points.values():
        series.sort(key=lambda point: point[0])
    if not all(points.values()) and host == "cold":
        raise SystemExit(
            f"no {QUEUE_BENCHMARK} results for every path in this JSON; run the GPU "
            "benchmarks (python -m pytest benchmarks -m cuda --benchmark-json=FILE) on a GPU"
        )
    return points


def describe_machine(results: dict[str, Any]) -> str:
    info = results["machine_info"]
    gpu = info.get("gpu") or {}
    return f"{gpu.get('name', 'no GPU')}, torch {info.get('torch')}, CUDA {info.get('cuda')}"


def ratio_table(points: dict[str, list[tuple[float, dict[str, float]]]]) -> str:
    """Markdown: median host time of each path per queue depth, and tensor / reference."""
    lines = [
        "| queued GPU work | reference median | tensor path median | tensor / reference |",
        "| --- | ---: | ---: | ---: |",
    ]
    tensor = dict(points["tensor"])
    for queue_ms, ref_stats in points["reference"]:
        if queue_ms not in tensor:
            continue
        ref, ten = ref_stats["median"], tensor[queue_ms]["median"]
        label = "idle" if queue_ms == 0 else f"{queue_ms:g} ms"
        lines.append(f"| {label} | {_us(ref)} | {_us(ten)} | {_ratio(ten / ref)} |")
    return "\n".join(lines)


def _ratio(ratio: float) -> str:
    return f"{ratio:,.1f}x" if ratio < 100 else f"{ratio:,.0f}x"


def _us(seconds: float) -> str:
    micro = seconds * 1e6
    return f"{micro:,.1f} us" if micro < 1000 else f"{micro / 1000:,.2f} ms"


def plot(results: dict[str, Any], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = queue_points(results)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=150)
    for (path, label), marker in zip(PATHS.items(), ("o", "s"), strict=True):
        xs = [queue_ms or IDLE_X for queue_ms, _ in points[path]]
        medians = [stats["median"] * 1e6 for _, stats in points[path]]
        # Error bars: the interquartile range of the rounds.
        low = [m - stats["q1"] * 1e6 for m, (_, stats) in zip(medians, points[path], strict=True)]
        high = [stats["q3"] * 1e6 - m for m, (_, stats) in zip(medians, points[path], strict=True)]
        ax.errorbar(xs, medians, yerr=[low, high], marker=marker, capsize=3, label=label)
    warm = queue_points(results, "warm")["reference"]
    if warm:
        ax.plot(
            [queue_ms or IDLE_X for queue_ms, _ in warm],
            [stats["median"] * 1e6 for _, stats in warm],
            "o--",
            color="C0",
            alpha=0.5,
            markersize=4,
            label=f"{PATHS['reference']}, warm host",
        )
    queued = [queue_ms for queue_ms, _ in points["tensor"] if queue_ms > 0]
    ax.plot(queued, [q * 1000 for q in queued], "k:", linewidth=1, label="the queued work itself")
    tensor = dict(points["tensor"])
    for queue_ms, stats in points["reference"]:
        if queue_ms in tensor:
            ratio = tensor[queue_ms]["median"] / stats["median"]
            ax.annotate(
                _ratio(ratio),
                (queue_ms or IDLE_X, stats["median"] * 1e6),
                textcoords="offset points",
                xytext=(0, -17),
                ha="center",
                fontsize=8,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=1)  # room for the ratio labels under the reference
    ticks = [IDLE_X, *queued]
    ax.set_xticks(ticks, ["idle", *(f"{q:g}" for q in queued)])
    ax.minorticks_off()
    ax.set_xlabel("GPU work queued before the slice (ms)")
    ax.set_ylabel("host time of one slice, median (us)")
    ax.set_title(
        "DP-local slice: host time vs queued GPU work (labels: tensor / reference, cold host)\n"
        + describe_machine(results),
        fontsize=10,
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="benchmark JSON from a GPU run")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "docs" / "img" / "host_time_vs_queue.png",
        help="where to write the PNG (default: docs/img/host_time_vs_queue.png)",
    )
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    plot(results, args.output)
    print(describe_machine(results))
    for host in ("cold", "warm"):
        points = queue_points(results, host)
        if all(points.values()):
            print(f"\n{host} host:\n{ratio_table(points)}")
    print()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
