"""``dpslice check`` from the outside: exit codes, one-line errors, --json, --list, --seed."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

from dpslice import __version__
from dpslice.check.progress import Progress
from dpslice.check.registry import builtin
from dpslice.check.report import JSON_SCHEMA, render_row
from dpslice.check.results import PropertyResult, Verdict
from dpslice.check.target import target_from_callable
from dpslice.cli import main
from tests.processes import marked_processes

AS_MERGED = "dpslice.specimens.upstream:get_dp_local_slice_cpu_as_merged"
DPSLICE = shutil.which("dpslice") or str(Path(sys.executable).with_name("dpslice"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DPSLICE, *args], capture_output=True, text=True, timeout=120, check=False
    )


def read_json(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_version() -> None:
    done = run("--version")
    assert (done.returncode, done.stdout) == (0, f"dpslice {__version__}\n")


def test_the_reference_passes_with_exit_0_and_excluded_properties_do_not_run(
    tmp_path: Path,
) -> None:
    # One run of the command for both: the reference's pass, and --exclude-property.
    report = tmp_path / "report.json"
    excluded = ["max_len_rows", "inputs_unchanged"]
    done = run(
        "check", "--max-examples", "10", "--seed", "0", "--json", str(report),
        "--exclude-property", excluded[0], "--exclude-property", excluded[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("dpslice check dpslice.reference:dp_local_slice\nseed 0  ")
    assert done.stdout.endswith("\nPASSED\n")
    document = read_json(report)
    assert document["passed"] is True
    expected = [prop.name for prop in builtin() if prop.name not in excluded]
    assert [prop["name"] for prop in document["properties"]] == expected
    totals = document["totals"]
    # On the CPU the CUDA view property does not apply, and sglang's capturer never chunks.
    assert (totals["passed"], totals["not_applicable"]) == (totals["properties"] - 2, 2)
    assert totals["warned"] == totals["failed"] == 0
    assert totals["properties"] >= 12
    assert all(prop["counterexample"] is None for prop in document["properties"])
    sync_free = next(prop for prop in document["properties"] if prop["name"] == "sync_free")
    assert sync_free["note"].startswith("dpslice.sync CPU-only mode")
    # stderr is a pipe here: the header says what runs, the rows are the report's alone.
    assert done.stderr.startswith("dpslice check dpslice.reference:dp_local_slice\nseed 0 ")
    assert not any(line.startswith(tuple(expected)) for line in done.stderr.splitlines())


_PARENT_MODULES = """
import atexit, sys
from dpslice.cli import main
atexit.register(lambda: print("loaded:", *sorted({"torch", "hypothesis"} & set(sys.modules))))
sys.exit(main(sys.argv[1:]))
"""

#: One worker (``-j 1``) wherever a test is not about running properties side by side:
#: each worker is a process that imports torch, and the report is the same for every N
#: (tests/test_check_supervisor.py compares them).  The reference's run below keeps -j auto.
ONE_WORKER = ("-j", "1")

FAILING_ARGS = ("check", AS_MERGED, "--max-examples", "30", "--seed", "1", *ONE_WORKER)


class FailingRun(NamedTuple):
    returncode: int
    stdout: str  # the report, without the line the watching program added
    document: dict[str, Any]
    loaded: str  # "loaded: ...": which of torch and Hypothesis the reporting process imported
    junit: ET.Element  # the same run's --junit-xml


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory: pytest.TempPathFactory) -> FailingRun:
    """``dpslice check`` on the as-merged upstream model, once for the module, in a
    process that says at its exit which of torch and Hypothesis it imported.  Its
    verdicts are of every kind (PASS, FAIL, WARN, N/A): the JUnit test reads them too."""
    directory = tmp_path_factory.mktemp("failing")
    report, junit = directory / "report.json", directory / "junit.xml"
    done = subprocess.run(
        [sys.executable, "-c", _PARENT_MODULES, *FAILING_ARGS, "--json", str(report),
         "--junit-xml", str(junit)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    stdout, _, loaded = done.stdout.rstrip("\n").rpartition("\n")
    root = ET.parse(junit).getroot()
    return FailingRun(done.returncode, stdout + "\n", read_json(report), loaded, root)


def test_the_supervising_process_imports_neither_torch_nor_hypothesis(
    failing_run: FailingRun,
) -> None:
    # Only the worker runs the target, so only the worker pays for importing torch;
    # the process that reports stays light, and a failing FAIL report still renders.
    assert failing_run.returncode == 1, failing_run.stdout
    assert failing_run.loaded == "loaded:", failing_run.loaded
    assert failing_run.document["versions"]["torch"] == torch.__version__


def test_a_failing_target_exits_1_and_keeps_its_results(failing_run: FailingRun) -> None:
    returncode, stdout, document = failing_run[:3]
    assert returncode == 1
    assert "FAIL capture_phase_explicit (hazard):" in stdout
    assert "WARN invalid_inputs_refused (hardening):" in stdout
    assert stdout.endswith("\nFAILED\n")
    assert document["passed"] is False
    verdicts = {prop["name"]: prop["verdict"] for prop in document["properties"]}
    assert verdicts["sum_len_rows"] == "PASS"
    assert verdicts["capture_phase_explicit"] == verdicts["graph_replay_rows"] == "FAIL"
    crash = next(p for p in document["properties"] if p["name"] == "capture_phase_explicit")
    assert crash["counterexample"]["outcome"]["error"] == "TypeError"


@pytest.mark.slow
def test_the_same_seed_reproduces_the_counterexamples_in_another_process(
    failing_run: FailingRun,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    again = tmp_path / "again.json"
    assert main([*FAILING_ARGS, "--json", str(again)]) == 1
    capsys.readouterr()

    def counterexamples(document: dict[str, Any]) -> dict[str, Any]:
        return {prop["name"]: prop["counterexample"] for prop in document["properties"]}

    first = counterexamples(failing_run.document)
    assert counterexamples(read_json(again)) == first
    assert first["graph_replay_rows"] is not None


# A process and its worker: a target that fails to load in the worker is one line and exit 2
# by default in tests/engines/test_sglang_missing.py; tests/test_check_target.py checks
# this target's message in this process.
@pytest.mark.slow
def test_a_bad_target_is_one_line_on_stderr_and_exit_2() -> None:
    done = run("check", "dpslice.no_such_module:f", *ONE_WORKER)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "dpslice: error: module 'dpslice.no_such_module' not found; check the spelling, "
        "install it, or run from the directory that holds it\n"
    )


def test_list_names_every_property(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list"]) == 0
    out = capsys.readouterr().out
    names = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert names[:3] == ["sum_len_rows", "max_len_rows", "graph_replay_rows"]
    assert "invalid_inputs_refused" in names
    assert (
        "    draws: layouts_and_ranks(contract_layouts(contract, modes=[Mode.SUM_LEN], "
        "max_count=32, max_dp_size=16))"
    ) in out


# -- the same command line, called in-process: usage errors --------------------------------

#: A usage error found in a worker (property names, the target): a process that imports
#: torch each.  The default run keeps one, sglang's missing engine in
#: tests/engines/test_sglang_missing.py; tests/test_check_target.py checks each target's
#: message in this process, and tests/test_check_battery.py an unknown property's.
SLOW_USAGE = pytest.mark.slow


BAD_TARGETS = [
    pytest.param(["nocolon"], "has no ':function' part", id="no-colon"),
    pytest.param(["missing/impl.py:f"], "file 'missing/impl.py' not found", id="no-file"),
    pytest.param(
        ["dpslice.reference:nope"], "has no attribute 'nope'", id="no-attribute", marks=SLOW_USAGE
    ),
    pytest.param(
        ["--property", "nope", *ONE_WORKER],
        "no property named 'nope'; choose from",
        id="property",
        marks=SLOW_USAGE,
    ),
    pytest.param(
        ["--exclude-property", "nope"],
        "no property named 'nope'; choose from sum_len_rows, ",
        id="exclude-property",
        marks=SLOW_USAGE,
    ),
    pytest.param(
        ["--property", "sum_len_rows", "--exclude-property", "sum_len_rows"],
        "every property is excluded",
        id="exclude-everything",
        marks=SLOW_USAGE,
    ),
    pytest.param(
        ["--distributed", "2", "--exclude-property", "sync_free"],
        "--exclude-property cannot be combined with --distributed",
        id="distributed-with-exclude",
    ),
    pytest.param(
        ["--junit-xml", "no/such/dir/junit.xml"],
        "no/such/dir' does not exist",
        id="junit-xml-directory",
    ),
    pytest.param(["--device", "tpu"], "device='tpu'; choose one of cpu, cuda", id="device"),
    pytest.param(
        ["--device", "cuda"],
        "device 'cuda' needs a CUDA GPU, and torch",
        id="cuda-without-gpu",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is available"),
    ),
    pytest.param(["--backend", "nccl"], "--backend: only for the round trip", id="backend-alone"),
    pytest.param(
        ["--run-timeout", "9"], "--run-timeout: only for the round trip", id="run-timeout-alone"
    ),
    pytest.param(
        ["--distributed", "2", "--property", "sum_len_rows", "--device", "cpu"],
        "--property, --device cannot be combined with --distributed",
        id="distributed-with-battery-options",
    ),
    pytest.param(
        ["--distributed", "2", "--backend", "mpi"], "backend='mpi': choose 'gloo'", id="backend"
    ),
    pytest.param(
        ["dpslice.no_such_module:f", "--distributed", "2"],
        "module 'dpslice.no_such_module' not found",
        id="distributed-bad-target",
        marks=SLOW_USAGE,
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_TARGETS)
def test_usage_errors_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("dpslice: error: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1


def test_json_into_a_missing_directory_is_refused_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--json", str(tmp_path / "no" / "r.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "-3", "many"])
def test_max_examples_below_one_is_an_argparse_error(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["check", "--max-examples", bad])
    assert caught.value.code == 2
    assert "--max-examples" in capsys.readouterr().err


@pytest.mark.slow  # the -x test below checks a file target's reproduce line by default
def test_a_file_target_with_a_selected_property(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    impl = tmp_path / "impl.py"
    impl.write_text("def f(*, global_num_tokens_cpu, dp_rank):\n    return 0, 0\n")
    assert main(["check", f"{impl}:f", "--max-examples", "20", "--seed", "2",
                 "--property", "sum_len_rows"]) == 1  # fmt: skip
    out = capsys.readouterr().out
    assert "FAIL sum_len_rows" in out
    assert "--seed 2 --max-examples 20 --property sum_len_rows" in out


# -- --distributed: the round trip through gloo ------------------------------------------


@pytest.mark.slow  # two ranks; test_check_supervisor.py runs --distributed 2 by default
def test_the_round_trip_passes_for_the_reference_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "round_trip.json"
    args = ["check", "--distributed", "2", "--max-examples", "30", "--seed", "0"]
    assert main([*args, "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "dpslice check dpslice.reference:dp_local_slice --distributed 2 --backend gloo\n"
        "seed 0  max examples 30  timeout 60 s per call, 600 s per run\n"
        "round trip: 2 ranks gather through gloo on cpu (start-up "
    )
    assert "\nround_trip_rows                PASS  " in out
    assert out.endswith("\nPASSED\n")
    document = read_json(report)
    # One schema for both modes: the battery's, with the mode and how it gathered.
    assert (document["schema"], document["mode"]) == (JSON_SCHEMA, "distributed")
    assert document["passed"] is True
    (prop,) = document["properties"]
    assert (prop["name"], prop["verdict"], prop["counterexamples"]) == (
        "round_trip_rows",
        "PASS",
        [],
    )
    assert prop["examples"] >= 30
    trip = document["round_trip"]
    assert (trip["dp_size"], trip["backend"], trip["devices"]) == (2, "gloo", ["cpu", "cpu"])
    assert document["reproduce"] == (
        "dpslice check dpslice.reference:dp_local_slice --distributed 2 --backend gloo "
        "--seed 0 --max-examples 30"
    )


def test_a_round_trip_without_a_verdict_keeps_its_result_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A harness failure (here: no time to start the group) is written, not lost."""
    report = tmp_path / "round_trip.json"
    args = ["check", "--distributed", "1", "--run-timeout", "0.001", "--seed", "0"]
    assert main([*args, "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert (
        "\nERROR round_trip_rows: the round trip reached no verdict: RoundTripTimeoutError: " in out
    )
    assert out.endswith("\nFAILED\n")
    document = read_json(report)
    assert document["passed"] is False
    (prop,) = document["properties"]
    assert (prop["verdict"], prop["examples"]) == ("ERROR", 0)
    assert "RoundTripTimeoutError: rank(s) [0]" in prop["note"]
    assert "--run-timeout 0.001" in document["reproduce"]


# -- contracts and tiers -------------------------------------------------------------------

CAPTURER = "tests/targets/capturers.py:running_sum"


def test_list_contracts_names_each_preset_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list-contracts"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert names == ["sglang-capturer", "sglang-gather", "vllm-dp", "vllm-chunked"]
    assert "sglang-capturer (default)" in out


@pytest.mark.slow  # two runs; test_check_contracts.py checks the strict verdicts in this process
def test_a_hardening_warning_exits_0_and_strict_makes_it_exit_1(tmp_path: Path) -> None:
    args = ["check", CAPTURER, "--max-examples", "10", "--seed", "1", "--quiet"]
    args += ["--property", "invalid_inputs_refused", "--property", "sum_len_rows"]
    lenient = run(*args, "--json", str(tmp_path / "lenient.json"))
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert "invalid_inputs_refused         WARN" in lenient.stdout
    assert "WARN invalid_inputs_refused (hardening):" in lenient.stdout
    document = read_json(tmp_path / "lenient.json")
    assert (document["passed"], document["totals"]["warned"], document["strict"]) == (
        True,
        1,
        False,
    )
    warned = document["properties"][0]
    assert (warned["verdict"], warned["tier"]) == ("WARN", "hardening")
    assert (
        len({ce["kind"] for ce in warned["counterexamples"]}) == len(warned["counterexamples"]) > 1
    )
    strict = run(*args, "--strict")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "invalid_inputs_refused         FAIL" in strict.stdout
    assert "--strict --property invalid_inputs_refused" in strict.stdout  # the reproduce line


@pytest.mark.slow  # the option's plumbing; test_check_runner.py renders the contract's line here
def test_contract_names_the_call_site_and_reaches_the_report(tmp_path: Path) -> None:
    result = run(
        "check",
        "dpslice.specimens.upstream:vllm_combine_slice",
        "--max-examples",
        "20",
        "--seed",
        "1",
        "--quiet",
        "--property",
        "sum_len_rows",
        "--contract",
        "vllm-dp",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "contract vllm-dp: vLLM's DPMetadata" in result.stdout
    assert read_json(tmp_path / "r.json")["contract"] == "vllm-dp"


@pytest.mark.slow  # a process; tests/test_contracts.py checks the message in this one
def test_an_unknown_contract_is_one_line_and_exit_2() -> None:
    result = run("check", CAPTURER, "--contract", "sglang")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dpslice: error: no contract named 'sglang'; choose from sglang-capturer, "
        "sglang-gather, vllm-dp, vllm-chunked or name your own as module:NAME"
    ]


# -- where its users work: CI files, -x, exclusions, short warnings, pipes ------------------

OFF_BY_ONE = """\
def f(*, global_num_tokens_cpu, dp_rank):
    return sum(global_num_tokens_cpu[:dp_rank]) + 1, global_num_tokens_cpu[dp_rank]
"""


def off_by_one(tmp_path: Path) -> str:
    path = tmp_path / "obo.py"
    path.write_text(OFF_BY_ONE)
    return f"{path}:f"


def test_junit_xml_has_a_case_per_property_and_each_failure_its_counterexample(
    failing_run: FailingRun,
) -> None:
    out = failing_run.stdout
    properties = {prop["name"]: prop for prop in failing_run.document["properties"]}
    assert {prop["verdict"] for prop in properties.values()} == {"PASS", "FAIL", "WARN", "N/A"}
    suite = failing_run.junit.find("testsuite")
    assert suite is not None
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == list(properties)
    for name, case in cases.items():
        verdict = properties[name]["verdict"]
        assert case.get("classname") == "dpslice.sglang-capturer"
        assert float(case.get("time", "")) == pytest.approx(properties[name]["seconds"], abs=1e-3)
        tags = [child.tag for child in case]
        expected = {"FAIL": ["failure"], "N/A": ["skipped"], "WARN": ["system-out"], "PASS": []}
        assert tags == expected[verdict], (name, verdict)
    failure = cases["graph_replay_rows"].find("failure")
    assert failure is not None
    assert failure.text is not None
    shown = properties["graph_replay_rows"]["counterexample"]
    for label, value in (
        ("layout", shown["layout"]),
        ("rank", str(shown["rank"])),
        ("call", shown["call"]["text"]),
        ("outcome", shown["outcome"]["text"]),
        ("expected", shown["expected"]["text"]),
        ("why", shown["why"]),
        (
            "reproduce",
            f"dpslice check {AS_MERGED} --seed 1 --max-examples 30 --property graph_replay_rows",
        ),
    ):
        assert f"\n  {label:<10} {value}" in failure.text, label
    assert failure.get("message") == shown["why"]
    assert f"\n{failure.text}\n" in out  # the text report's very block


def test_exitfirst_stops_at_the_first_failure_and_reports_the_rest_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, junit = tmp_path / "r.json", tmp_path / "junit.xml"
    args = ["check", off_by_one(tmp_path), "--max-examples", "10", "--seed", "1", "--quiet", "-x"]
    assert main([*args, *ONE_WORKER, "--json", str(report), "--junit-xml", str(junit)]) == 1
    out = capsys.readouterr().out
    # A file target's reproduce line (the JUnit test above reads a module target's).
    assert f"\n  reproduce  dpslice check {args[1]} --seed 1 --max-examples 10 " in out
    assert "--max-examples 10 --property sum_len_rows\n" in out
    rest = [prop.name for prop in builtin()][1:]
    reason = "stopped after the first FAIL or ERROR (-x/--exitfirst)"
    assert f"\nincomplete: {reason}; not run: {', '.join(rest)}\n" in out
    assert out.endswith("\nINCOMPLETE\n")
    document = read_json(report)
    assert [prop["name"] for prop in document["properties"]] == ["sum_len_rows"]
    assert document["properties"][0]["verdict"] == "FAIL"
    assert (document["passed"], document["complete"], document["stopped"]) == (
        False,
        False,
        "exitfirst",
    )
    assert document["not_run"] == rest
    skipped = [case.find("skipped") for case in ET.parse(junit).getroot().iter("testcase")][1:]
    assert [node.get("message") if node is not None else None for node in skipped] == [
        f"not run: {reason}"
    ] * len(rest)


@pytest.mark.slow  # two runs; tests/test_check_report.py renders both forms in this process
def test_a_warn_is_one_line_per_kind_and_verbose_shows_each_in_full(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "r.json"
    args = ["check", CAPTURER, "--max-examples", "10", "--seed", "1", "--quiet"]
    args += ["--property", "invalid_inputs_refused", "--json", str(report)]
    assert main(args) == 0
    brief = capsys.readouterr().out
    kinds = [ce["kind"] for ce in read_json(report)["properties"][0]["counterexamples"]]
    assert len(kinds) > 1
    block = brief[brief.index("WARN invalid_inputs_refused") :].splitlines()
    # The heading, "not refused", a line per kind, reproduce, the hint; then the verdict.
    assert len(block) == 1 + 1 + len(kinds) + 2 + 2
    assert all(f"    {kind}" in line for kind, line in zip(kinds, block[2:], strict=False))
    assert "--verbose" in block[-3]
    assert "\n  layout     " not in brief
    assert main([*args, "--verbose"]) == 0
    assert capsys.readouterr().out.count("\n  layout     ") == len(kinds)


class _Stream(io.StringIO):
    def __init__(self, *, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_rows_go_only_to_a_terminal() -> None:
    target = target_from_callable(lambda *, dp_rank: (0, 0), spec="impl.py:f")
    row = PropertyResult("sum_len_rows", "s", Verdict.PASS, examples=3, seconds=0.5)
    written = {}
    for tty in (True, False):
        stream = _Stream(tty=tty)
        progress = Progress(stream, header=["dpslice check impl.py:f", "seed 0"])
        progress.loaded(target)
        progress.started("sum_len_rows")
        progress.tick("sum_len_rows", 3, 0.5)
        progress.finished(row)
        progress.close()
        written[tty] = stream.getvalue()
    header = "dpslice check impl.py:f\nseed 0\nthe target takes: dp_rank\n"
    assert written[False] == header
    assert written[True].startswith(header)
    assert f"{render_row(row)}\n" in written[True]
    assert "sum_len_rows: 3 calls" in written[True]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["check", "--list"], marks=pytest.mark.slow),  # it imports the battery
        ["check", "--list-contracts"],
        ["--help"],
        ["check", "--help"],
    ],
    ids=["list", "list-contracts", "help", "check-help"],
)
def test_a_reader_that_closes_early_ends_the_output_quietly(args: list[str]) -> None:
    # ``dpslice check --list | head -1``, with head gone before the first write.
    process = subprocess.Popen([DPSLICE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err.decode()) == (0, "")


def test_help_points_to_what_an_installed_user_has() -> None:
    top, check = run("--help"), run("check", "--help")
    assert "docs/" not in top.stdout + check.stdout
    assert "dpslice check --help" in top.stdout
    for pointer in ("TARGET is called with keyword arguments only", "dpslice check --list\n"):
        assert pointer in check.stdout
    assert "dpslice check --list-contracts" in check.stdout


@pytest.mark.slow
def test_run_check_leaves_no_hypothesis_directory_behind(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "HYPOTHESIS_STORAGE_DIRECTORY"}
    program = (
        "from dpslice.check import run_check\n"
        "from hypothesis.configuration import storage_directory\n"
        "home = storage_directory(intent_to_write=False).home_directory\n"
        "report = run_check(max_examples=3, seed=0, properties=['sum_len_rows'])\n"
        "assert report.passed\n"
        "assert storage_directory(intent_to_write=False).home_directory == home\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []


# -- interrupted at any moment: no report claims a pass it did not finish ---------------------

INTERRUPTS = 20


def interrupted_run(
    directory: Path, anchor: str | None, delay: float = 0.0
) -> tuple[int, dict[str, Any] | None]:
    """``dpslice check`` with a SIGINT ``delay`` seconds after its start (``anchor``
    ``"start"``), after the target loaded (``"loaded"``: its header is on stderr), or
    never (``None``).  Its exit status and JSON, once none of its processes is left."""
    directory.mkdir()
    report, marker = directory / "r.json", uuid.uuid4().hex
    # The whole battery, tiny: without --property the supervising process never
    # imports torch, so it starts and ends at once, and the run takes about 2 s.
    args = ["check", "--max-examples", "2", "--seed", "0", "--json", str(report)]
    process = subprocess.Popen(
        [DPSLICE, *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "DPSLICE_TEST_MARKER": marker},
    )  # fmt: skip
    assert process.stderr is not None
    if anchor == "loaded":
        process.stderr.readline()  # the header: printed once the worker loaded the target
    if anchor is not None:
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    deadline = time.monotonic() + 5
    while marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marked_processes(marker) == [], f"processes left after a SIGINT {delay} s after {anchor}"
    return process.returncode, read_json(report) if report.exists() else None


@pytest.mark.slow  # 21 runs; tests/test_check_supervisor.py interrupts one in the default run
def test_a_run_interrupted_at_any_moment_never_says_it_passed_nor_leaves_a_process(
    tmp_path: Path,
) -> None:
    battery = [prop.name for prop in builtin()]
    status, whole = interrupted_run(tmp_path / "whole", None)
    assert status == 0
    assert whole is not None
    assert (whole["passed"], whole["complete"], whole["not_run"]) == (True, True, [])
    # Half the moments fall from the start (most while the worker imports torch and
    # the target), half after the target loaded, while the properties run or after
    # they ended: that is where a report is written.
    rng = random.Random(1234)
    moments = [
        ("start", rng.uniform(0.0, 1.5)) if index % 2 else ("loaded", rng.uniform(0.0, 0.7))
        for index in range(INTERRUPTS)
    ]
    with ThreadPoolExecutor(2) as lanes:  # two at a time: most of a run waits for imports
        runs = list(
            lanes.map(
                lambda each: interrupted_run(tmp_path / str(each[0]), *each[1]),
                enumerate(moments),
            )
        )
    incomplete = 0
    for moment, (status, document) in zip(moments, runs, strict=True):
        if document is None:  # interrupted before the target loaded: nothing to report
            continue
        # 130: the check saw the SIGINT; 0: it came after the run; -SIGINT: it came
        # while the interpreter shut down, after the report was out.
        assert status in (0, 130, -signal.SIGINT), (moment, status)
        names = [prop["name"] for prop in document["properties"]]
        if status != 130 or document["passed"]:
            assert (document["passed"], document["complete"], names) == (True, True, battery)
        if not document["complete"]:
            incomplete += 1
            assert document["passed"] is False, moment
            assert document["stopped"] == "interrupted", moment
            # Properties run side by side (-j): what finished and what did not
            # share out the battery, each in the battery's order.
            assert sorted(names + document["not_run"], key=battery.index) == battery, moment
            assert names == sorted(names, key=battery.index), moment
            assert document["not_run"] == sorted(document["not_run"], key=battery.index)
    assert incomplete > 0, runs


def test_the_help_names_every_parameter_of_the_calling_convention(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dpslice.check.target import CONVENTION

    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = text.split("TARGET is called with keyword arguments only")[1].split("returns")[0]
    assert [name for name in CONVENTION if name in listed] == list(CONVENTION)
    assert "pydoc" not in text
