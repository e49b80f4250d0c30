"""Hostile and faulty targets (``tests/targets/hostile.py``) through ``dpslice check``.

Whatever a target does to its own process, the check ends in a report and a
JSON, blames the target for what the target did, never itself, and leaves
nothing behind.

Each test is a ``dpslice check`` process (and its worker, which imports torch),
so most are ``slow``: CI's slow stage runs them.  The README's test command
keeps a forged verdict and a target that ends its process leaving a child
behind; tests/test_check_supervisor.py hangs, kills and interrupts others there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from dpslice.isolation import MIN_CALL_TIMEOUT
from dpslice.supervision.supervisor import BatterySupervisor
from tests.processes import marked_processes

HOSTILE = Path(__file__).parent / "targets" / "hostile.py"
DPSLICE = str(Path(sys.executable).with_name("dpslice"))


def check(
    tmp_path: Path, function: str, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = tmp_path / "report.json"
    result = subprocess.run(
        [DPSLICE, "check", f"{HOSTILE}:{function}", "--max-examples", "50", "--seed", "1",
         "--quiet", "--json", str(report), *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result, json.loads(report.read_text())


def verdicts(document: dict[str, Any]) -> dict[str, str]:
    return {prop["name"]: prop["verdict"] for prop in document["properties"]}


def none_left(marker: str) -> bool:
    """Whether every process of the run marked ``marker`` is gone (within 5 s)."""
    deadline = time.monotonic() + 5
    while marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return marked_processes(marker) == []


@pytest.mark.slow
@pytest.mark.parametrize("function", ["unprintable_interrupt", "unprintable_error"])
def test_an_exception_whose_str_raises_is_the_targets_fail(tmp_path: Path, function: str) -> None:
    result, document = check(tmp_path, function)
    assert result.returncode == 1
    found = verdicts(document)
    assert found["graph_replay_rows"] == "FAIL"
    assert "ERROR" not in found.values(), found
    outcome = next(p for p in document["properties"] if p["name"] == "graph_replay_rows")
    assert "<its str() raised RuntimeError>" in outcome["counterexample"]["outcome"]["text"]


@pytest.mark.parametrize(
    "function",
    [
        "index_bounds",  # slicing with its bounds reads them through __index__
        "moves_away",  # the working directory is the check's again after each call
        "forgets_dpslice",  # records still pickle with the check's own classes
    ],
)
@pytest.mark.slow
def test_a_correct_target_that_disturbs_its_process_passes(tmp_path: Path, function: str) -> None:
    result, document = check(tmp_path, function)
    assert result.returncode == 0, result.stdout
    assert set(verdicts(document).values()) <= {"PASS", "WARN", "N/A"}, verdicts(document)


def test_a_verdict_forged_in_the_worker_does_not_stand(tmp_path: Path) -> None:
    result, document = check(
        tmp_path, "forges_a_pass", "--property", "sum_len_rows",
        env={"DPSLICE_HOSTILE_FORGE": "1"},
    )  # fmt: skip
    assert result.returncode == 1
    (prop,) = document["properties"]
    assert prop["verdict"] == "ERROR"
    assert prop["examples"] == 0
    assert "no call of the target seen" in prop["note"]


@pytest.mark.slow
@pytest.mark.parametrize("distributed", [False, True], ids=["battery", "round-trip"])
def test_children_in_a_session_of_their_own_die_with_the_check(
    tmp_path: Path, distributed: bool
) -> None:
    mode = ["--distributed", "2"] if distributed else ["--property", "sum_len_rows"]
    marker = uuid.uuid4().hex
    check(tmp_path, "detaches_children", *mode, env={"DPSLICE_TEST_MARKER": marker})
    assert none_left(marker)


@pytest.mark.slow  # the whole battery, 500 layouts a property: chances for a late clock
def test_a_short_timeout_times_the_call_alone(tmp_path: Path) -> None:
    """The per-call clock stops when the call returns, not at the check's next record."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [DPSLICE, "check", "--timeout", "0.05", "--seed", "3", "--quiet", "--json", str(report)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert json.loads(report.read_text())["passed"] is True


def test_a_timeout_below_what_can_be_measured_is_refused() -> None:
    with pytest.raises(ValueError, match=f"give at least {MIN_CALL_TIMEOUT:g}"):
        BatterySupervisor("dpslice.reference:dp_local_slice", timeout=MIN_CALL_TIMEOUT / 10)


@pytest.mark.slow
def test_a_target_whose_every_call_hangs_ends_after_three_timeouts(tmp_path: Path) -> None:
    began = time.monotonic()
    result, document = check(tmp_path, "hangs_always", "--timeout", "1")
    took = time.monotonic() - began
    assert result.returncode == 1
    # Three timeouts, the start-up of one worker and the check's own few seconds.
    assert took < 3 * 1 + 15, took
    assert document["complete"] is False
    assert [prop["verdict"] for prop in document["properties"]] == ["FAIL"] * 3
    assert "first call hung in three properties in a row" in document["incomplete_reason"]
    assert len(document["not_run"]) == 11
    assert "did not return within 1 s" in result.stdout


@pytest.mark.slow  # a timeout and a new worker for each property that draws a graph
def test_a_target_that_hangs_in_one_state_has_every_property_judged(tmp_path: Path) -> None:
    result, document = check(tmp_path, "hangs_in_graph_replay", "--timeout", "1")
    assert result.returncode == 1
    assert document["complete"] is True
    found = verdicts(document)
    assert found["sum_len_rows"] == found["max_len_rows"] == "PASS"
    assert found["graph_replay_rows"] == found["prefill_graph_rows"] == "FAIL"
    assert "ERROR" not in found.values(), found


def test_what_a_target_detaches_before_ending_its_process_dies_with_the_check(
    tmp_path: Path,
) -> None:
    marker = uuid.uuid4().hex
    result, _ = check(
        tmp_path, "detaches_then_exits", "--property", "sum_len_rows",
        env={"DPSLICE_TEST_MARKER": marker},
    )  # fmt: skip
    assert result.returncode == 1
    assert "ended the process with exit code 3" in result.stdout
    assert none_left(marker)
