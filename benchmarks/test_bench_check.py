"""Throughput of ``dpslice check`` on the reference: layouts checked per second.

"Pure-reference" properties are the registered ones that need nothing beyond
the CPU (``Property.requires is None``): no GPU, no process group.  The seed is
fixed, so every round draws the same layouts.  Target: >= 1,000 layouts/s.

The check runs in a worker process, a plain interpreter as the ``dpslice check``
command runs in.  Under pytest, modules of every distribution that registers a
pytest plugin are loaded with their asserts rewritten, Hypothesis's among them,
and its drawing then runs about a third slower than in the command.

A round takes seconds, long enough that on a shared machine the other
processes' load decides its wall time (2 to 3x swings were seen here on two
cores), so a round is timed in the worker's CPU time (``time.process_time``
around ``run_check``), which the regression gate compares; the wall-clock rate
of the last round is kept beside it in ``extra_info``.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from dpslice.check import CheckReport, run_check
from dpslice.check.registry import registered

TARGET = "dpslice.reference:dp_local_slice"
SEED = 20240
EXAMPLES_PER_PROPERTY = 500  # dpslice check's default


def check_round(max_examples: int, seed: int) -> tuple[float, CheckReport]:
    """Run in the worker: the pure-reference properties against the reference.

    Returns the CPU seconds ``run_check`` took there, and its report.
    """
    properties = [prop for prop in registered() if prop.requires is None]
    started = time.process_time()
    report = run_check(TARGET, max_examples=max_examples, seed=seed, properties=properties)
    return time.process_time() - started, report


class WorkerClock:
    """A pytest-benchmark timer: the worker's CPU seconds in ``run_check`` so far.

    It advances only when a round returns, so a round's duration is that
    round's CPU time in the worker, not the round trip to it.
    """

    __name__ = "worker_process_time"  # what pytest-benchmark records as the timer

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


CLOCK = WorkerClock()


@pytest.mark.benchmark(timer=CLOCK)
def test_check_throughput(benchmark) -> None:
    benchmark.group = "dpslice check"
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as worker:

        def one_round() -> CheckReport:
            cpu_seconds, report = worker.submit(check_round, EXAMPLES_PER_PROPERTY, SEED).result()
            CLOCK.seconds += cpu_seconds
            return report

        last = benchmark.pedantic(one_round, rounds=3, warmup_rounds=1)

    assert last.passed, last.failed
    # No statistics under --benchmark-disable (a plain test run): the last round's wall time.
    median_s = benchmark.stats.stats.median if benchmark.stats else last.seconds
    benchmark.extra_info.update(
        target=TARGET,
        seed=SEED,
        examples_per_property=EXAMPLES_PER_PROPERTY,
        properties=[result.name for result in last.results],
        layouts=last.examples,
        layouts_per_cpu_second=round(last.examples / median_s, 1),
        layouts_per_wall_second=round(last.examples / last.seconds, 1),
        per_property_layouts_per_second={
            result.name: round(result.examples / result.seconds, 1) for result in last.results
        },
    )
