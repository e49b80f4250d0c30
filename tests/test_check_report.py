"""The report of a check: one property's block, an incomplete run, the JUnit XML.

Built from hand-made results, so each test is about rendering alone; the
command line's tests (tests/test_cli.py) run the same renderers on real checks.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from dpslice import DPLayout
from dpslice.check.outcome import MAX_TEXT, Outcome, OutcomeKind
from dpslice.check.registry import Counterexample, RelatedCall, Tier
from dpslice.check.report import (
    bounded,
    render_result,
    render_text,
    reproduce_command,
    to_json,
    to_junit_xml,
    write_junit_xml,
)
from dpslice.check.results import CheckReport, PropertyResult, Stop, Verdict
from dpslice.check.target import target_from_callable
from dpslice.contracts import Contract
from tests.targets.engines import PACKED_ONLY


def impl(*, global_num_tokens_cpu: list[int], dp_rank: int) -> tuple[int, int]:
    return 0, global_num_tokens_cpu[dp_rank]


TARGET = target_from_callable(impl, spec="impl.py:impl")


def counterexample(kind: str | None = None, message: str = "boom") -> Counterexample:
    return Counterexample(
        layout=DPLayout(counts=(1, 2)),
        rank=1,
        function="impl",
        arguments={"global_num_tokens_cpu": [1, 2], "dp_rank": 1},
        outcome=Outcome(
            kind=OutcomeKind.INCIDENTAL, error="IndexError", message=message, location="impl.py:2"
        ),
        expected="(1, 2): rows r1[0..1]",
        why="a valid layout must give the rank its slice, not an error",
        kind=kind,
    )


def result(
    name: str,
    verdict: Verdict,
    *,
    counterexamples: tuple[Counterexample, ...] = (),
    note: str | None = None,
    tier: Tier = Tier.HAZARD,
) -> PropertyResult:
    return PropertyResult(
        name=name,
        statement=f"{name} holds.",
        verdict=verdict,
        examples=7,
        seconds=0.25,
        counterexamples=counterexamples,
        note=note,
        tier=tier,
    )


KINDS = ("negative count", "bool count", "tensor dp_rank")
PASSING = result("sum_len_rows", Verdict.PASS)
FAILING = result("max_len_rows", Verdict.FAIL, counterexamples=(counterexample(),))
WARNING = result(
    "invalid_inputs_refused",
    Verdict.WARN,
    counterexamples=tuple(counterexample(kind) for kind in KINDS),
    tier=Tier.HARDENING,
)
NOT_APPLICABLE = result("cuda_view", Verdict.NOT_APPLICABLE, note="run with --device cuda")
BROKEN = result("sync_free", Verdict.ERROR, note="the check itself broke, not the target (X)")


def report(
    *results: PropertyResult, stopped: Stop | None = None, not_run: tuple[str, ...] = ()
) -> CheckReport:
    return CheckReport(
        target=TARGET,
        seed=1,
        max_examples=7,
        results=results,
        seconds=1.5,
        stopped=stopped,
        not_run=not_run,
    )


# -- one property's block ----------------------------------------------------------------


def test_render_result_is_the_block_the_text_report_shows() -> None:
    whole = report(PASSING, FAILING, WARNING, NOT_APPLICABLE, BROKEN)
    text = render_text(whole)
    blocks = {each.name: render_result(whole, each) for each in whole.results}
    assert [name for name, block in blocks.items() if block] == [
        "max_len_rows",
        "invalid_inputs_refused",
        "sync_free",
    ]
    for block in filter(None, blocks.values()):
        assert f"\n\n{block}\n\n" in text
    failing = render_result(whole, FAILING)
    assert failing.splitlines()[0] == "FAIL max_len_rows (hazard): max_len_rows holds."
    assert "  call       impl(global_num_tokens_cpu=[1, 2], dp_rank=1)" in failing
    assert (
        "  reproduce  dpslice check impl.py:impl --seed 1 --max-examples 7 --property " in failing
    )
    assert render_result(whole, BROKEN) == f"ERROR sync_free: {BROKEN.note}"


def test_a_clash_shows_the_other_ranks_call_in_the_text_and_the_json() -> None:
    other = RelatedCall(
        rank=0, call="impl(global_num_tokens_cpu=[1, 2], dp_rank=0)", outcome="returned (0, 2)"
    )
    clash = replace(counterexample(), related=(other,))
    whole = report(result("ranks_disjoint_in_bounds", Verdict.FAIL, counterexamples=(clash,)))
    lines = render_result(whole, whole.results[0]).splitlines()
    why = lines.index("  why        a valid layout must give the rank its slice, not an error")
    assert lines[why + 1] == f"  rank 0     {other.call} -> returned (0, 2)"
    assert lines[why + 2].startswith("  reproduce  ")
    shown = to_json(whole)["properties"][0]["counterexample"]
    assert shown["related"] == [{"rank": 0, "call": other.call, "outcome": "returned (0, 2)"}]
    assert to_json(report(FAILING))["properties"][0]["counterexample"]["related"] == []


def test_a_warn_is_one_line_per_kind_unless_verbose() -> None:
    whole = report(WARNING)
    brief = render_result(whole, WARNING).splitlines()
    assert brief[:2] == [
        "WARN invalid_inputs_refused (hardening): invalid_inputs_refused holds.",
        "  not refused, 3 kinds:",
    ]
    assert brief[2:5] == [
        f"    {kind:<14}  impl(global_num_tokens_cpu=[1, 2], dp_rank=1) -> crashed with IndexError"
        for kind in KINDS
    ]
    assert brief[5].startswith("  reproduce  dpslice check impl.py:impl --seed 1 ")
    assert "--verbose" in brief[6]
    assert len(brief) == 7
    full = render_result(whole, WARNING, verbose=True)
    assert full.count("  layout     DPLayout(counts=(1, 2))") == len(KINDS)
    assert render_text(whole, verbose=True).count("  layout     ") == len(KINDS)
    assert "  layout     " not in render_text(whole)


# -- an incomplete run ---------------------------------------------------------------------


def test_an_interrupted_run_has_not_passed_whatever_finished() -> None:
    stopped = report(PASSING, stopped=Stop.INTERRUPTED, not_run=("max_len_rows", "cuda_view"))
    assert (stopped.passed, stopped.complete) == (False, False)
    assert report(PASSING).passed
    text = render_text(stopped).splitlines()
    assert "incomplete: interrupted by Ctrl-C or SIGTERM; not run: max_len_rows, cuda_view" in text
    assert text[-1] == "INTERRUPTED"
    document = json.loads(json.dumps(to_json(stopped)))
    assert document["schema"] == "dpslice-check/4"
    assert {key: document[key] for key in ("passed", "complete", "stopped", "not_run")} == {
        "passed": False,
        "complete": False,
        "stopped": "interrupted",
        "not_run": ["max_len_rows", "cuda_view"],
    }
    assert document["incomplete_reason"] == "interrupted by Ctrl-C or SIGTERM"


def test_a_run_stopped_at_its_first_failure_ends_incomplete() -> None:
    stopped = report(FAILING, stopped=Stop.EXITFIRST, not_run=("cuda_view",))
    text = render_text(stopped).splitlines()
    assert text[-1] == "INCOMPLETE"
    assert (
        "incomplete: stopped after the first FAIL or ERROR (-x/--exitfirst); not run: cuda_view"
        in text
    )


def test_a_complete_report_says_so() -> None:
    document = to_json(report(PASSING, FAILING))
    assert (document["complete"], document["stopped"], document["not_run"]) == (True, None, [])
    assert document["incomplete_reason"] is None
    assert render_text(report(PASSING)).endswith("\nPASSED\n")


def test_properties_not_run_need_a_reason() -> None:
    with pytest.raises(ValueError, match="needs stopped="):
        report(PASSING, not_run=("cuda_view",))


# -- JUnit XML -----------------------------------------------------------------------------


def cases(xml: str) -> dict[str, ET.Element]:
    root = ET.fromstring(xml)
    return {case.get("name", ""): case for case in root.iter("testcase")}


def test_junit_xml_has_a_case_per_property_and_one_per_property_not_run(tmp_path: Path) -> None:
    whole = report(
        PASSING,
        FAILING,
        WARNING,
        NOT_APPLICABLE,
        BROKEN,
        stopped=Stop.INTERRUPTED,
        not_run=("ranks_disjoint_in_bounds",),
    )
    path = tmp_path / "junit.xml"
    write_junit_xml(whole, path)
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    assert {key: suite.get(key) for key in ("tests", "failures", "errors", "skipped")} == {
        "tests": "6",
        "failures": "1",
        "errors": "1",
        "skipped": "2",
    }
    found = cases(path.read_text())
    assert list(found) == [*(each.name for each in whole.results), "ranks_disjoint_in_bounds"]
    assert {case.get("classname") for case in found.values()} == {"dpslice.sglang-capturer"}
    assert found["sum_len_rows"].get("time") == "0.250"
    assert list(found["sum_len_rows"]) == []
    failure = found["max_len_rows"].find("failure")
    assert failure is not None
    assert failure.text == render_result(whole, FAILING)
    assert failure.get("message") == "a valid layout must give the rank its slice, not an error"
    error = found["sync_free"].find("error")
    assert error is not None
    assert error.get("message") == BROKEN.note
    skipped = found["cuda_view"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "run with --device cuda"
    not_run = found["ranks_disjoint_in_bounds"].find("skipped")
    assert not_run is not None
    assert not_run.get("message") == "not run: interrupted by Ctrl-C or SIGTERM"
    warned = found["invalid_inputs_refused"]
    assert [child.tag for child in warned] == ["system-out"]  # a WARN passes
    assert warned[0].text == render_result(whole, WARNING, verbose=True)
    properties = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert properties == {
        "target": whole.target.spec,
        "seed": str(whole.seed),
        "max_examples": str(whole.max_examples),
        "device": "cpu",
        "contract": "sglang-capturer",
        "strict": "false",
        "passed": "false",
        "complete": "false",
        "incomplete_reason": "interrupted by Ctrl-C or SIGTERM",
        "reproduce": reproduce_command(whole),
    }
    complete = ET.fromstring(to_junit_xml(report(PASSING)))
    reason = [
        p.get("value") for p in complete.iter("property") if p.get("name") == "incomplete_reason"
    ]
    assert reason == [""]


def test_junit_xml_holds_any_message_the_target_raised() -> None:
    # XML 1.0 cannot carry a NUL or most control characters, even escaped.
    odd = result(
        "max_len_rows", Verdict.FAIL, counterexamples=(counterexample(message="a\x00b\x1b"),)
    )
    failure = cases(to_junit_xml(report(odd)))["max_len_rows"].find("failure")
    assert failure is not None
    assert failure.text is not None
    assert "IndexError: a\\x00b\\x1b at impl.py:2" in failure.text


@pytest.mark.parametrize(
    ("contract", "words"),
    [
        pytest.param(None, [], id="the-default"),
        pytest.param("sglang-capturer", [], id="the-default-by-name"),
        pytest.param("vllm-dp", ["--contract", "vllm-dp"], id="a-preset"),
        pytest.param(
            "tests.targets.engines:PACKED_ONLY",
            ["--contract", "tests.targets.engines:PACKED_ONLY"],
            id="module-and-name",
        ),
        pytest.param(
            PACKED_ONLY,
            ["--contract", "<module>:<NAME of the packed-only contract>"],
            id="a-contract-in-hand",
        ),
    ],
)
def test_the_reproduce_command_names_the_contract_as_a_rerun_finds_it(
    contract: str | Contract | None, words: list[str]
) -> None:
    target = target_from_callable(impl, spec="impl.py:impl", contract=contract)
    report = CheckReport(target=target, seed=1, max_examples=5, results=(), seconds=0.0)
    assert shlex.split(reproduce_command(report))[7:] == words


def test_a_contract_the_target_names_needs_no_option() -> None:
    def named(*, global_num_tokens_cpu: list[int], dp_rank: int) -> tuple[int, int]:
        return 0, 0

    named.__dpslice_contract__ = PACKED_ONLY  # type: ignore[attr-defined]
    report = CheckReport(
        target=target_from_callable(named), seed=1, max_examples=5, results=(), seconds=0.0
    )
    assert "--contract" not in reproduce_command(report)
    judged = replace(report, target=report.target.judged_as("vllm-dp"))
    assert "--contract vllm-dp" in reproduce_command(judged)


HUGE = 5_000_000


def test_every_message_and_repr_is_bounded_in_text_json_and_junit() -> None:
    """A target's 5 MB message, repr or note must not make a 40 MB report."""
    huge = "m" * HUGE
    flooded = replace(
        counterexample(message=huge),
        arguments={"global_num_tokens_cpu": [1, 2], "dp_rank": huge},
        why=huge,
    )
    full = report(
        result("max_len_rows", Verdict.FAIL, counterexamples=(flooded,)),
        result("sync_free", Verdict.ERROR, note=huge),
    )
    text, document, junit = render_text(full), json.dumps(to_json(full)), to_junit_xml(full)
    for rendered in (text, document, junit):
        assert len(rendered) < 20 * MAX_TEXT
        assert re.search(r"m\.\.\. \(4,99\d,\d{3} more characters\)", rendered)
    assert f"... ({HUGE - MAX_TEXT:,} more characters)" in document  # the message itself
    assert all(len(line) <= MAX_TEXT + 64 for line in text.splitlines())
    assert bounded(bounded(huge)) == bounded(huge)  # a bounded text is not cut again
