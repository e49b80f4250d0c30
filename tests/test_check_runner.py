"""The runner's verdicts and seeds, and the text and JSON reports."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from hypothesis import find
from hypothesis import strategies as st

from dpslice import DPLayout, Mode
from dpslice.check import CheckReport, Property, Verdict, run_check
from dpslice.check.report import JSON_SCHEMA, render_text, reproduce_command, to_json
from dpslice.check.runner import MAX_BATCH, RERUN_FACTOR, _batches
from dpslice.check.target import Target
from dpslice.errors import CheckConfigError
from dpslice.strategies import dp_layouts

AS_MERGED = "dpslice.specimens.upstream:get_dp_local_slice_cpu_as_merged"
CAPTURE = "capture_phase_explicit"


def broken_check(target: Target, example: int) -> None:
    raise KeyError("the battery's own bug")


def test_a_check_that_breaks_is_an_error_not_a_failure() -> None:
    broken = Property(
        name="broken_property",
        statement="Breaks.",
        draws="st.integers()",
        strategy=lambda _target: st.integers(),
        check=broken_check,
    )
    result = run_check(max_examples=5, seed=0, properties=[broken]).results[0]
    assert result.verdict is Verdict.ERROR
    assert result.note is not None
    assert "the check itself broke, not the target (KeyError" in result.note
    assert not result.holds


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"seed": "abc"}, "seed='abc' must be an int >= 0", id="seed-a-string"),
        pytest.param({"seed": 1.5}, "seed=1.5 must be an int >= 0", id="seed-a-float"),
        pytest.param({"seed": -1}, "seed=-1 must be an int >= 0", id="seed-negative"),
        pytest.param({"seed": True}, "seed=True must be an int >= 0", id="seed-a-bool"),
        pytest.param(
            {"properties": []}, "properties=[] names no property to run", id="no-property"
        ),
    ],
)
def test_run_check_refuses_what_a_report_could_not_stand_behind(
    arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(CheckConfigError, match=re.escape(message)):
        run_check(max_examples=1, **arguments)  # type: ignore[arg-type]


def unbuildable(target: Target) -> st.SearchStrategy[int]:
    raise ValueError("no strategy for this target")


def test_a_property_that_breaks_before_its_search_is_an_error_not_a_crash() -> None:
    broken = Property(
        name="broken_set_up",
        statement="Breaks before drawing.",
        draws="nothing",
        strategy=unbuildable,
        check=broken_check,
    )
    (result,) = run_check(max_examples=5, seed=0, properties=[broken]).results
    assert result.verdict is Verdict.ERROR
    assert result.note == (
        "the check itself broke, not the target (ValueError: no strategy for this target)"
    )


def test_a_target_that_changes_its_mind_is_reported_flaky() -> None:
    calls = itertools.count()

    def flaky(*, global_num_tokens_cpu: list[int] | None, dp_rank: int) -> tuple[int, int]:
        if next(calls) == 0:
            return global_num_tokens_cpu[dp_rank], 0  # type: ignore[index]  # crashes once
        raise ValueError("refuses ever after")

    result = run_check(flaky, max_examples=20, seed=0, properties=[CAPTURE]).results[0]
    assert result.verdict is Verdict.ERROR
    assert result.note is not None
    assert "different outcomes for the same call" in result.note


def test_a_target_that_fails_a_batch_then_passes_it_is_an_error() -> None:
    """The batch search and its replay saw a failure that no later run could find."""
    calls = itertools.count()

    def fails_twice(*, global_num_tokens_cpu: list[int], dp_rank: int) -> tuple[int, int]:
        if next(calls) < 2:  # the first call and Hypothesis's replay of it
            return (0, -1)
        return (sum(global_num_tokens_cpu[:dp_rank]), global_num_tokens_cpu[dp_rank])

    result = run_check(fails_twice, max_examples=20, seed=0, properties=["sum_len_rows"])
    only = result.results[0]
    assert only.verdict is Verdict.ERROR
    # The failure and its replay, then the single-layout search for it (RERUN_FACTOR times
    # the budget), then the failing run of batches again.
    assert only.examples > 2 + RERUN_FACTOR * 20
    assert only.note == (
        "the target failed a batch of layouts, then passed the same batches "
        "(its outcome depends on more than the call)"
    )


def test_a_failure_is_shrunk_one_layout_per_example() -> None:
    """Shrinking a batch would shrink its passing layouts too: thousands of checks."""
    result = run_check(AS_MERGED, max_examples=100, seed=1, properties=["graph_replay_rows"])
    failed = result.results[0]
    assert failed.verdict is Verdict.FAIL
    assert failed.counterexample is not None
    assert failed.counterexample.layout == DPLayout(
        (0, 1), Mode.GRAPH_REPLAY, graph_batch_size=1, num_tokens_per_bs=2
    )
    assert failed.examples < 400


def _recording(strategy: st.SearchStrategy[object], seen: list[object]) -> Property:
    def record(target: Target, example: object) -> None:
        seen.append(example)

    return Property(
        name="records_its_examples",
        statement="Holds; keeps what it was given.",
        draws="recorded",
        strategy=lambda _target: strategy,
        check=record,
    )


@pytest.mark.parametrize("budget", [1, 10, 11, 100, 451, 452, 1000])
def test_a_passing_property_checks_exactly_max_examples(budget: int) -> None:
    seen: list[object] = []
    prop = _recording(st.integers(0, 10**6), seen)
    result = run_check(max_examples=budget, seed=3, properties=[prop]).results[0]
    assert result.verdict is Verdict.PASS
    assert result.examples == len(seen) == budget


def test_the_search_checks_mostly_distinct_layouts() -> None:
    """Hypothesis mutates its examples after the tenth, and a mutant batch repeats most of its
    parent's layouts: one long run of ten-layout batches checked 147 distinct layouts of 500.
    Short runs check about 440; one layout per example in one long run, about 400 to 450."""
    seen: list[object] = []
    prop = _recording(dp_layouts(), seen)
    run_check(max_examples=500, seed=3, properties=[prop])
    assert len(seen) == 500
    assert len(set(seen)) > 375


def test_the_simplest_batch_is_one_layout() -> None:
    """Hypothesis starts each run with its simplest example: one layout, not a batch of copies."""
    assert find(_batches(st.integers(0, 9), MAX_BATCH), lambda batch: True) == [0]
    assert (
        find(_batches(st.integers(0, 9), MAX_BATCH), lambda batch: len(batch) > 1)
        == [0] * MAX_BATCH
    )


def test_the_same_seed_gives_the_same_counterexample() -> None:
    first, second = (
        run_check(AS_MERGED, max_examples=100, seed=7, properties=["graph_replay_rows"])
        for _ in range(2)
    )
    assert first.results[0].counterexample == second.results[0].counterexample
    assert first.seed == second.seed == 7


def test_without_a_seed_a_random_one_is_recorded() -> None:
    seeds = {run_check(max_examples=1, properties=[CAPTURE]).seed for _ in range(3)}
    assert len(seeds) > 1


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_max_examples_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(CheckConfigError, match=r"max_examples=.* must be an int >= 1"):
        run_check(max_examples=bad, properties=[CAPTURE])  # type: ignore[arg-type]


def test_properties_must_be_a_sequence_not_one_name() -> None:
    with pytest.raises(TypeError, match="not one string"):
        run_check(max_examples=1, properties=CAPTURE)


# -- the reports ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def failing() -> CheckReport:
    return run_check(AS_MERGED, max_examples=100, seed=3, properties=["sum_len_rows", CAPTURE])


def test_the_text_report_shows_header_table_and_counterexample(failing: CheckReport) -> None:
    text = render_text(failing)
    assert text.startswith(
        f"dpslice check {AS_MERGED}\nseed 3  max examples 100  device cpu\n"
        "contract sglang-capturer: sglang's routed-experts / indexer capturer"
    )
    assert (
        "the target takes: can_run_graph, cuda_graph_batch, dp_rank, global_num_tokens_cpu" in text
    )
    assert (
        "2 properties: 1 passed, 1 failed (hazards), 0 warned (hardening), 0 n/a, 0 errors;" in text
    )
    for expected in (
        f"FAIL {CAPTURE} (hazard): In CUDA-graph capture",
        "  layout     DPLayout(counts=(1,), mode=Mode.GRAPH_CAPTURE, graph_batch_size=1)",
        "  rank       0",
        "  call       get_dp_local_slice_cpu_as_merged(global_num_tokens_cpu=None, dp_rank=0, "
        "can_run_graph=True, cuda_graph_batch=1)",
        "  outcome    crashed with incidental TypeError: 'NoneType' object is not subscriptable "
        "at dpslice/specimens/upstream.py:",
        "  expected   a deliberate error, or exactly the slice (0, 1)",
        f"  reproduce  dpslice check {AS_MERGED} --seed 3 --max-examples 100 --property {CAPTURE}",
    ):
        assert expected in text
    assert text.endswith("\nFAILED\n")


def test_a_table_row_per_property(failing: CheckReport) -> None:
    rows = [
        line.split()
        for line in render_text(failing).splitlines()
        if line.startswith(("sum_", "cap"))
    ]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("sum_len_rows", "PASS", "100"),
        (CAPTURE, "FAIL", str(failing.result(CAPTURE).examples)),
    ]


def test_the_json_report_carries_the_same_facts(failing: CheckReport) -> None:
    document = json.loads(json.dumps(to_json(failing)))
    assert document["schema"] == JSON_SCHEMA
    assert (document["target"], document["seed"], document["passed"]) == (AS_MERGED, 3, False)
    assert document["totals"]["failed"] == 1
    assert document["totals"]["examples"] == failing.examples
    assert set(document["versions"]) == {"dpslice", "torch", "hypothesis", "python"}
    passing, capture = document["properties"]
    assert (passing["verdict"], passing["counterexample"]) == ("PASS", None)
    counterexample = capture["counterexample"]
    assert counterexample["layout"] == repr(failing.result(CAPTURE).counterexample.layout)  # type: ignore[union-attr]
    assert counterexample["call"]["kwargs"] == {
        "global_num_tokens_cpu": "None",
        "dp_rank": "0",
        "can_run_graph": "True",
        "cuda_graph_batch": "1",
    }
    assert counterexample["outcome"]["kind"] == "incidental"
    assert counterexample["outcome"]["error"] == "TypeError"
    assert counterexample["expected"]["slice"] == [0, 1]


def test_reproduce_command_quotes_paths() -> None:
    report = run_check(max_examples=1, seed=5, properties=[CAPTURE])
    object.__setattr__(report.target, "spec", "my dir/impl.py:f")
    assert reproduce_command(report, CAPTURE) == (
        f"dpslice check 'my dir/impl.py:f' --seed 5 --max-examples 1 --property {CAPTURE}"
    )


def test_the_report_reproduce_command_names_a_selection(failing: CheckReport) -> None:
    assert to_json(failing)["reproduce"] == (
        f"dpslice check {AS_MERGED} --seed 3 --max-examples 100 "
        f"--property sum_len_rows --property {CAPTURE}"
    )
