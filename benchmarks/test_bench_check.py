"""Throughput of ``dpslice check`` on the reference: layouts checked per second.

"Pure-reference" properties are the registered ones that need nothing beyond
the CPU (``Property.requires is None``): no GPU, no process group.  The seed is
fixed, so every round draws the same layouts.  Target: >= 1,000 layouts/s.

A round takes seconds, long enough that on a shared machine the other
processes' load decides its wall time (2 to 3x swings were seen here on two
cores), so the benchmark is timed in this process's CPU time
(``time.process_time``) and the regression gate compares that; the wall-clock
rate of the last round is kept beside it in ``extra_info``.
"""

from __future__ import annotations

import time

import pytest

from dpslice.check import run_check
from dpslice.check.registry import registered

TARGET = "dpslice.reference:dp_local_slice"
SEED = 20240
EXAMPLES_PER_PROPERTY = 500  # dpslice check's default


@pytest.mark.benchmark(timer=time.process_time)
def test_check_throughput(benchmark) -> None:
    properties = [prop for prop in registered() if prop.requires is None]
    benchmark.group = "dpslice check"

    report = benchmark.pedantic(
        run_check,
        args=(TARGET,),
        kwargs={"max_examples": EXAMPLES_PER_PROPERTY, "seed": SEED, "properties": properties},
        rounds=3,
        warmup_rounds=1,
    )

    assert report.passed, report.failed
    # No statistics under --benchmark-disable (a plain test run): the report's wall time.
    median_s = benchmark.stats.stats.median if benchmark.stats else report.seconds
    benchmark.extra_info.update(
        target=TARGET,
        seed=SEED,
        examples_per_property=EXAMPLES_PER_PROPERTY,
        properties=[prop.name for prop in properties],
        layouts=report.examples,
        layouts_per_cpu_second=round(report.examples / median_s, 1),
        layouts_per_wall_second=round(report.examples / report.seconds, 1),
        per_property_layouts_per_second={
            result.name: round(result.examples / result.seconds, 1) for result in report.results
        },
    )
