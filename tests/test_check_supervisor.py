"""``dpslice check`` cannot be fooled or hung by the code it checks.

The target runs in a runner worker (dpslice.runner): a call
that hangs, exits, raises a BaseException or crashes the interpreter is a FAIL
of the property being checked, with the call in flight; the parent prints the
report, writes the JSON and decides the exit status; nothing is left behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from dpslice.check import Verdict, run_check
from dpslice.check.inflight import ended
from dpslice.check.report import write_document
from dpslice.check.target import target_from_callable
from dpslice.cli import main
from dpslice.distributed import run_round_trip
from dpslice.distributed.errors import RankFailedError
from dpslice.errors import BadTargetError, CheckConfigError
from dpslice.runner import Ending, environment
from dpslice.supervision.supervisor import BatterySupervisor, Workers
from tests.processes import marked_processes

DPSLICE = str(Path(sys.executable).with_name("dpslice"))

#: A target that behaves like the reference until ``misbehave`` says otherwise.
PRELUDE = """\
import ctypes, os, sys, time
from dpslice.reference import dp_local_slice

def f(*, global_num_tokens_cpu, dp_rank, dp_size, can_run_graph, graph_extent):
    counts = global_num_tokens_cpu
    if isinstance(counts, list) and all(type(c) is int for c in counts):
        misbehave(counts, dp_size, can_run_graph)
    return dp_local_slice(
        counts, dp_rank, dp_size=dp_size, can_run_graph=can_run_graph, graph_extent=graph_extent
    )
"""


def target_file(tmp_path: Path, misbehave: str, name: str = "impl.py") -> str:
    path = tmp_path / name
    path.write_text(PRELUDE + "\n" + textwrap.dedent(misbehave))
    return f"{path}:f"


def read_json(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def properties(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {prop["name"]: prop for prop in document["properties"]}


# -- 1, 2: every way a call can fail to come back, in one run ------------------------------

#: Each call with tokens claims the next way of ending its process that no call claimed
#: yet (a file created once), so that each property of the run meets one, whichever
#: worker (``-j 2``) runs it.  The process ends, so Hypothesis never replays the call.
KILLS = """
WAYS = ["hang", "os_exit", "segfault", "sigkill"]

def misbehave(counts, dp_size, can_run_graph):
    if sum(counts) == 0:
        return
    for way in WAYS:
        try:
            os.close(os.open(os.path.join(os.environ["DPSLICE_TEST_TOKENS"], way),
                             os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        if way == "hang":
            time.sleep(3600)
        if way == "os_exit":
            os._exit(0)
        if way == "segfault":
            ctypes.string_at(0)
        os.kill(os.getpid(), 9)  # as the kernel's out-of-memory killer would
"""
#: How the report tells each way.
TOLD = {
    "Timeout": "did not return within 1 s (--timeout); the worker was killed",
    "exit": "ended the process with exit code 0 (sys.exit or os._exit)",
    "SIGSEGV": "crashed the process: killed by SIGSEGV (a crash in native code)",
    "SIGKILL": "ended the process: killed by SIGKILL (the kernel's out-of-memory killer or a "
    "kill from outside the check, not a crash of its own)",
}
#: Four properties that meet the four ways, and one that never calls with counts.
KILLED = ["sum_len_rows", "max_len_rows", "graph_replay_rows", "prefill_graph_rows"]
NEVER_KILLED = "capture_phase_explicit"


@dataclass
class Run:
    status: int
    seconds: float
    out: str
    err: str
    spec: str
    found: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def aborted_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """``dpslice check -j 2`` of five properties, four of which meet a call that hangs,
    exits, crashes or is killed."""
    tmp_path = tmp_path_factory.mktemp("aborts")
    (tmp_path / "tokens").mkdir()
    spec = target_file(tmp_path, KILLS)
    report = tmp_path / "r.json"
    args = [word for name in [*KILLED, NEVER_KILLED] for word in ("--property", name)]
    args += ["--max-examples", "20", "--seed", "1", "--timeout", "1", "-j", "2"]
    out, err = io.StringIO(), io.StringIO()
    began = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DPSLICE_TEST_TOKENS", str(tmp_path / "tokens"))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["check", spec, *args, "--json", str(report)])
    seconds = time.monotonic() - began
    return Run(status, seconds, out.getvalue(), err.getvalue(), spec, properties(read_json(report)))


def test_a_hanging_call_fails_with_the_call_and_the_rest_still_runs(aborted_run: Run) -> None:
    assert aborted_run.status == 1
    # Worker start-ups and the timeout: seconds, not forever (a loaded CI machine is slow).
    assert aborted_run.seconds < 60
    # Progress comes first, on stderr: what runs (its rows only on a terminal).
    assert aborted_run.err.startswith(f"dpslice check {aborted_run.spec}\nseed 1  max examples 20")
    assert "did not return within 1 s (--timeout)" in aborted_run.out
    assert "  call       f(global_num_tokens_cpu=[" in aborted_run.out
    assert "reproduce  dpslice check" in aborted_run.out
    verdicts = {name: prop["verdict"] for name, prop in aborted_run.found.items()}
    assert verdicts == {**dict.fromkeys(KILLED, "FAIL"), NEVER_KILLED: "PASS"}


def test_exits_crashes_and_kills_fail_the_property_in_flight(aborted_run: Run) -> None:
    failed = [aborted_run.found[name] for name in KILLED]
    told = {prop["counterexample"]["outcome"]["error"]: prop for prop in failed}
    assert sorted(told) == sorted(TOLD)
    for error, prop in told.items():
        assert prop["counterexample"]["outcome"]["text"].startswith(TOLD[error])
        assert prop["counterexample"]["call"]["text"].startswith("f(global_num_tokens_cpu=")
        assert f"--property {prop['name']}" in aborted_run.out


def test_a_base_exception_from_a_call_fails_the_property_in_flight(tmp_path: Path) -> None:
    spec = target_file(
        tmp_path,
        """
        def misbehave(counts, dp_size, can_run_graph):
            if len(counts) == 1 and dp_size > 1:  # a skipped gather
                import pytest
                pytest.skip("not today")
            if sum(counts) > 0:
                sys.exit(0)
        """,
    )
    names = ["max_len_rows", "skipped_gather_rows"]
    report = BatterySupervisor(spec, properties=names, max_examples=20, seed=3).run()
    outcomes = [
        result.counterexample.outcome.describe()
        for result in report.results
        if result.counterexample
    ]
    assert [result.verdict for result in report.results] == [Verdict.FAIL] * 2
    assert outcomes[0].startswith("raised SystemExit: 0, a BaseException")
    assert outcomes[1].startswith("raised Skipped: not today")


@pytest.mark.parametrize(
    ("signal_name", "says"),
    [
        ("SIGKILL", "the kernel's out-of-memory killer or a kill from outside the check"),
        ("SIGSEGV", "a crash in native code"),
        ("SIGABRT", "a crash in native code"),
    ],
)
def test_a_killed_rank_is_described_by_what_its_signal_may_mean(
    signal_name: str, says: str
) -> None:
    number = signal.Signals[signal_name].value
    failed = RankFailedError(1, exitcode=-number, traceback_text="")
    assert f"rank 1 was killed by signal {number} ({signal_name}: {says}" in str(failed)
    assert says in ended(Ending(None, signal_name)).describe()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param("sys.exit(0)", "raised SystemExit(0)", id="sys-exit", marks=pytest.mark.slow),
        pytest.param("os._exit(0)", "ended the process (exit code 0)", id="os-exit"),
        pytest.param("time.sleep(3600)", "did not finish within 1 s (--import-timeout)", id="hang"),
        pytest.param(
            "os.kill(os.getpid(), 9)",
            "ended the process (killed by SIGKILL: the kernel's out-of-memory killer",
            id="sigkill",
            marks=pytest.mark.slow,  # the worker's end, as os-exit; its words, above
        ),
    ],
)
def test_an_import_that_exits_or_hangs_is_a_bad_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, says: str
) -> None:
    impl = tmp_path / "impl.py"
    impl.write_text(f"import os, sys, time\n{body}\ndef f(*, dp_rank):\n    return 0, 0\n")
    args = ["check", f"{impl}:f", "--import-timeout", "1", "--json", str(tmp_path / "r.json")]
    assert main(args) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith(f"dpslice: error: importing the target {impl}:f {says}")
    assert not (tmp_path / "r.json").exists()


# -- 5: a return value that raises when read -------------------------------------------


class Exploding:
    @property
    def start(self) -> int:
        raise RuntimeError("no start here")

    length = 0


def test_a_result_that_raises_when_read_is_the_targets_failure() -> None:
    def exploding(*, global_num_tokens_cpu: list[int], dp_rank: int) -> object:
        return Exploding()

    def meta(*, global_num_tokens_cpu: list[int], dp_rank: int) -> object:
        return torch.tensor(0, device="meta"), torch.tensor(0, device="meta")

    for target, problem in ((exploding, "reading its start and length raised RuntimeError"),
                            (meta, "reading start raised")):  # fmt: skip
        result = run_check(target, max_examples=5, seed=0, properties=["sum_len_rows"]).results[0]
        assert result.verdict is Verdict.FAIL, result.note
        assert result.counterexample is not None
        assert result.counterexample.outcome.problem is not None
        assert result.counterexample.outcome.problem.startswith(problem)


# -- 6: the round trip's timeouts ----------------------------------------------------------


def test_a_rank_whose_call_hangs_fails_with_its_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = target_file(
        tmp_path,
        """
        def misbehave(counts, dp_size, can_run_graph):
            if sum(counts) >= 3:
                time.sleep(3600)
        """,
    )
    report = tmp_path / "r.json"
    began = time.monotonic()
    status = main(["check", spec, "--distributed", "2", "--max-examples", "20", "--seed", "1",
                   "--timeout", "1", "--json", str(report)])  # fmt: skip
    assert time.monotonic() - began < 60  # seconds, not forever (see above)
    out = capsys.readouterr().out
    assert status == 1
    assert "\n  call       f(global_num_tokens_cpu=" in out
    assert "\n  outcome    did not return within 1 s (--timeout); the group was killed\n" in out
    document = read_json(report)
    (prop,) = document["properties"]
    assert prop["verdict"] == "FAIL"
    assert prop["counterexamples"][0]["outcome"]["error"] == "Timeout"
    assert prop["examples"] >= 1


@pytest.mark.slow  # a group of two ranks for each; the hanging call runs by default (above)
@pytest.mark.parametrize(
    ("body", "told"),
    [
        ("os._exit(0)", "ended the process with exit code 0 (sys.exit or os._exit)"),
        ("sys.exit(0)", "raised SystemExit: 0, a BaseException that is no Exception"),
        ("ctypes.string_at(0)", "crashed the process: killed by SIGSEGV (a crash in native code)"),
        ("os.kill(os.getpid(), 9)", "ended the process: killed by SIGKILL (the kernel's"),
    ],
    ids=["os-exit", "sys-exit", "segfault", "sigkill"],
)
def test_a_rank_whose_call_ends_its_process_fails_with_its_call(
    tmp_path: Path, body: str, told: str
) -> None:
    spec = target_file(
        tmp_path,
        f"""
        def misbehave(counts, dp_size, can_run_graph):
            if sum(counts) >= 3:
                {body}
        """,
    )
    report = tmp_path / "r.json"
    assert main(["check", spec, "--distributed", "2", "--max-examples", "20", "--seed", "1",
                 "--quiet", "--json", str(report)]) == 1  # fmt: skip
    (prop,) = read_json(report)["properties"]
    assert prop["verdict"] == "FAIL"
    (found,) = prop["counterexamples"]
    assert found["outcome"]["text"].startswith(told)
    assert found["call"]["text"].startswith("f(global_num_tokens_cpu=")


@pytest.mark.slow  # two ranks and a timeout; the battery's import hang runs by default
def test_a_round_trip_whose_import_hangs_is_a_bad_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    impl = tmp_path / "impl.py"
    impl.write_text("import time\ntime.sleep(3600)\ndef f(*, dp_rank):\n    return 0, 0\n")
    assert main(["check", f"{impl}:f", "--distributed", "2", "--import-timeout", "1"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(
        f"dpslice: error: importing the target {impl}:f did not finish within 1 s "
        "(--import-timeout)"
    )


# -- 7, 9: the JSON and stdout -----------------------------------------------------------


def test_a_json_that_cannot_be_written_keeps_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    impl = tmp_path / "impl.py"
    # The JSON's directory exists when the run starts, and is gone when it ends.
    impl.write_text(
        f"import shutil\nshutil.rmtree({str(out)!r})\n\n"
        "def f(*, global_num_tokens_cpu, dp_rank):\n    return 0, 0\n"
    )
    report = out / "r.json"
    status = main(["check", f"{impl}:f", "--max-examples", "10", "--seed", "2",
                   "--property", "sum_len_rows", "--json", str(report)])  # fmt: skip
    assert status == 1
    assert f"dpslice: error: cannot write --json {report}" in capsys.readouterr().err
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []


@pytest.mark.parametrize("bad", ["inf", "nan", "-inf"])
def test_a_timeout_that_is_not_finite_is_refused(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["check", f"--timeout={bad}"])
    assert caught.value.code == 2
    assert "not a finite number of seconds" in capsys.readouterr().err


def test_json_is_strict_and_a_nan_seed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_document({"seed": math.nan}, tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(CheckConfigError, match="seed=nan must be an int"):
        run_round_trip("dpslice.reference:dp_local_slice", dp_size=1, seed=math.nan)  # type: ignore[arg-type]
    with pytest.raises(CheckConfigError, match="finite"):
        run_round_trip("dpslice.reference:dp_local_slice", dp_size=1, timeout=math.inf)


# -- 10: rough edges ---------------------------------------------------------------------


def test_async_and_generator_functions_are_refused() -> None:
    async def coroutine(*, dp_rank: int) -> tuple[int, int]:
        return 0, 0

    def generator(*, dp_rank: int) -> Any:
        yield 0, 0

    with pytest.raises(BadTargetError, match="is an async function"):
        target_from_callable(coroutine)
    with pytest.raises(BadTargetError, match="is a generator function"):
        target_from_callable(generator)


def test_the_working_directory_cannot_shadow_the_check_nor_be_written_nor_keep_it_alive(
    tmp_path: Path,
) -> None:
    """Nor can a closed stdout (``dpslice check ... | true``) lose the JSON or the verdict."""
    for module in ("numpy", "secrets", "hypothesis"):
        (tmp_path / f"{module}.py").write_text(f"raise ImportError('the local {module}.py')\n")
    (tmp_path / "impl.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,)).start()  # not a daemon\n"
        "from dpslice.reference import dp_local_slice as f\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "HYPOTHESIS_STORAGE_DIRECTORY"}
    reader, writer = os.pipe()
    os.close(reader)
    report = tmp_path / "out" / "r.json"
    report.parent.mkdir()
    done = subprocess.run(
        [DPSLICE, "check", "impl:f", "--max-examples", "5", "--seed", "0",
         "--property", "sum_len_rows", "--json", str(report)],
        cwd=tmp_path, env=env, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    os.close(writer)
    assert (done.returncode, "Traceback" in done.stderr) == (0, False), done.stderr
    assert read_json(report)["passed"] is True
    assert not (tmp_path / ".hypothesis").exists()


# -- Ctrl-C and SIGTERM: the partial report, nothing left behind ------------------------------


@pytest.mark.parametrize(
    "distributed",
    [False, pytest.param(True, marks=pytest.mark.slow)],
    ids=["battery", "round-trip"],
)
def test_ctrl_c_prints_what_finished_writes_its_json_and_leaves_nothing(
    tmp_path: Path, distributed: bool
) -> None:
    hanging = tmp_path / "hanging"
    spec = target_file(
        tmp_path,
        f"""
        def misbehave(counts, dp_size, can_run_graph):
            if can_run_graph:  # graph replay: say so, then hang
                open({str(hanging)!r}, "w").close()
                time.sleep(3600)
        """,
    )
    report = tmp_path / "r.json"
    marker = uuid.uuid4().hex
    mode = (
        ["--distributed", "2"]
        if distributed
        else ["--property", "sum_len_rows", "--property", "graph_replay_rows"]
    )
    process = subprocess.Popen(
        [DPSLICE, "check", spec, *mode, "--max-examples", "10", "--seed", "0", "--timeout", "60",
         "--json", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "DPSLICE_TEST_MARKER": marker},
    )  # fmt: skip
    # Interrupt once a call hangs (in the battery, once sum_len_rows has finished).
    deadline = time.monotonic() + 120
    while not hanging.exists():
        assert time.monotonic() < deadline, "the target never reached its hanging call"
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 130
    assert out.endswith("\nINTERRUPTED\n")
    names = [prop["name"] for prop in read_json(report)["properties"]]
    if distributed:
        assert names == ["round_trip_rows"]
        assert read_json(report)["properties"][0]["verdict"] == "ERROR"
    else:
        assert "sum_len_rows" in out
        assert names == ["sum_len_rows"]
    time.sleep(0.2)
    assert marked_processes(marker) == []


# -- properties side by side (-j) ----------------------------------------------------

#: Records each call's process and time, and takes a while over each.
TIMED_CALLS = """
def misbehave(counts, dp_size, can_run_graph):
    began = time.monotonic()
    time.sleep(0.1)
    with open(os.environ["DPSLICE_TEST_CALLS"], "a") as log:
        log.write(f"{os.getpid()} {began} {time.monotonic()}\\n")
"""


def _comparable(report: Any) -> dict[str, Any]:
    """The report's JSON without the times, which differ from run to run."""
    from dpslice.check.report import to_json

    document: dict[str, Any] = to_json(report)
    document.pop("totals")
    document["properties"] = [
        {key: value for key, value in prop.items() if key != "seconds"}
        for prop in document["properties"]
    ]
    return document


@pytest.mark.parametrize(
    "target",
    [
        "dpslice.specimens.tensor_path:tensor_path_slice",
        pytest.param(None, marks=pytest.mark.slow, id="as-merged"),
    ],
)
def test_side_by_side_the_report_is_the_one_of_a_single_worker(target: str | None) -> None:
    spec = target or "dpslice.specimens.upstream:get_dp_local_slice_cpu_as_merged"
    started = {1: _Started(), 2: _Started()}
    with environment() as env, Workers(env) as workers:  # -j 2 takes the worker -j 1 used
        reports = [
            BatterySupervisor(
                spec, max_examples=30, seed=5, jobs=jobs, workers=workers, listener=started[jobs]
            ).run()
            for jobs in (1, 2)
        ]
    one, two = map(_comparable, reports)
    assert [prop["verdict"] for prop in one["properties"]].count("FAIL") >= 2
    assert two == one
    # Side by side, each property still runs once, in one worker (in whatever order).
    assert started[1].names == [prop["name"] for prop in one["properties"]]
    assert sorted(started[2].names) == sorted(started[1].names)


class _Started:
    """A listener that keeps the name of each property as a worker starts it."""

    live = False

    def __init__(self) -> None:
        self.names: list[str] = []

    def loaded(self, target: object) -> None:
        pass

    def started(self, name: str) -> None:
        self.names.append(name)

    def tick(self, name: str | None, calls: int, seconds: float) -> None:
        pass

    def finished(self, result: object) -> None:
        pass


@pytest.mark.slow  # the report of -j 2 is the one of -j 1 (above): this times the workers
def test_properties_run_in_workers_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "calls.log"
    monkeypatch.setenv("DPSLICE_TEST_CALLS", str(log))
    names = ["sum_len_rows", "max_len_rows", "skipped_gather_rows", "inputs_unchanged"]
    report = BatterySupervisor(
        target_file(tmp_path, TIMED_CALLS), properties=names, max_examples=20, jobs=2
    ).run()
    assert [result.name for result in report.results] == names
    assert all(result.verdict is Verdict.PASS for result in report.results)
    calls = [line.split() for line in log.read_text().splitlines()]
    spans: dict[str, list[tuple[float, float]]] = {pid: [] for pid, _, _ in calls}
    for pid, began, ended_at in calls:
        spans[pid].append((float(began), float(ended_at)))
    assert len(spans) == 2, "one worker ran every property"
    first, second = spans.values()
    assert any(a[0] < b[1] and b[0] < a[1] for a in first for b in second), (
        "the two workers never ran at the same time"
    )


@pytest.mark.slow  # a timeout per graph state; a hanging call is judged by default (above)
def test_side_by_side_a_hang_in_one_state_leaves_every_other_property_judged(
    tmp_path: Path,
) -> None:
    hangs = target_file(
        tmp_path,
        """
        def misbehave(counts, dp_size, can_run_graph):
            if can_run_graph:
                time.sleep(3600)
        """,
    )
    report = BatterySupervisor(hangs, max_examples=30, seed=0, timeout=1, jobs=2).run()
    verdicts = {result.name: result.verdict for result in report.results}
    assert report.stopped is None
    assert report.not_run == ()
    assert verdicts["sum_len_rows"] is Verdict.PASS
    assert verdicts["graph_replay_rows"] is Verdict.FAIL
    assert Verdict.ERROR not in verdicts.values(), verdicts


def test_jobs_below_one_are_refused() -> None:
    with pytest.raises(CheckConfigError, match="jobs=0: at least one worker"):
        BatterySupervisor("dpslice.reference:dp_local_slice", jobs=0)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["-j", "0"], "argument -j/--jobs: 0 is below 1: pass auto or a number of workers"),
        (["-j", "two"], "argument -j/--jobs: 'two' is not an integer: pass auto or a number"),
    ],
)
def test_a_bad_job_count_is_a_usage_error(
    option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["check", *option])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_jobs_do_not_combine_with_the_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--distributed", "2", "-j", "2"]) == 2
    assert "--jobs cannot be combined with --distributed" in capsys.readouterr().err


def test_auto_is_the_usable_cpus_within_the_cap_and_the_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dpslice import isolation

    monkeypatch.setattr(isolation.os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(isolation, "available_memory", lambda: None)
    assert isolation.auto_jobs() == isolation.AUTO_JOBS_CAP
    monkeypatch.setattr(isolation, "available_memory", lambda: 3 * isolation.WORKER_MEMORY)
    assert isolation.auto_jobs() == 3
    monkeypatch.setattr(isolation, "available_memory", lambda: 0)
    assert isolation.auto_jobs() == 1
    monkeypatch.setattr(isolation.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(isolation, "available_memory", lambda: None)
    assert isolation.auto_jobs() == 2
