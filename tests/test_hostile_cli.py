"""``dpslice check``'s own failure modes: never a traceback, never the target blamed for
what is not its doing, never a report lost or one that says what did not happen."""

from __future__ import annotations

import json
import os
import random
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dpslice.check.progress import Progress
from dpslice.check.report import output_problem
from dpslice.cli import main
from tests.processes import marked_processes

DPSLICE = str(Path(sys.executable).with_name("dpslice"))


def run(
    *args: str, env: dict[str, str] | None = None, **options: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DPSLICE, *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, **(env or {})},
        **options,
    )


def read_json(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def assert_one_error_line(stderr: str, start: str) -> None:
    """stderr ends with exactly one ``dpslice: error:`` line, and holds no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("dpslice: error:")]
    assert len(errors) == 1, stderr
    assert errors[0].startswith(start), stderr
    assert stderr.endswith(errors[0] + "\n"), stderr


# -- the check itself breaks -----------------------------------------------------------------


def test_a_worker_that_cannot_import_torch_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # A torch that fails to import, found first on the path of every process of the run:
    # the supervising process never imports torch (not even to check --property names),
    # so only the worker meets it, before the target loads.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "torch.py").write_text('raise ImportError("this torch is broken")\n')
    report = tmp_path / "r.json"
    done = run(
        "check", "--property", "sum_len_rows", "--max-examples", "2", "--seed", "0",
        "--json", str(report), env={"PYTHONPATH": str(broken)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert_one_error_line(done.stderr, "dpslice: error: the check itself broke: ")
    assert "this torch is broken" in done.stderr
    # The target never loaded: the report says nothing was judged, and why.
    assert done.stdout.endswith("\nINCOMPLETE\n")
    written = json.loads(report.read_text())
    assert (written["passed"], written["complete"], written["stopped"]) == (False, False, "broke")
    assert written["properties"] == []
    assert written["not_run"] == ["sum_len_rows"]


class _BreaksAtSecondRow(Progress):
    """Progress whose second finished row raises: the check's own code failing mid-run."""

    rows = 0

    def finished(self, result: object) -> None:
        type(self).rows += 1
        if type(self).rows == 2:
            raise RuntimeError("the progress display broke")


def test_a_check_that_breaks_mid_run_reports_what_finished_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("dpslice.check.progress.Progress", _BreaksAtSecondRow)
    report, junit = tmp_path / "r.json", tmp_path / "junit.xml"
    args = ["check", "-j", "1", "--max-examples", "2", "--seed", "0", "--json", str(report)]
    status = main([*args, "--junit-xml", str(junit)])
    out, err = capsys.readouterr()
    assert status == 2
    assert_one_error_line(
        err, "dpslice: error: the check itself broke: RuntimeError: the progress display broke"
    )
    assert "\nincomplete: the check itself broke; not run: " in out
    assert out.endswith("\nINCOMPLETE\n")
    document = read_json(report)
    assert (document["passed"], document["complete"], document["stopped"]) == (
        False,
        False,
        "broke",
    )
    assert [prop["name"] for prop in document["properties"]] == ["sum_len_rows", "max_len_rows"]
    assert document["not_run"][0] == "graph_replay_rows"
    assert junit.read_text().count("<testcase ") == 2 + len(document["not_run"])


def test_a_call_timeout_too_short_to_time_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["check", "--timeout", "0.001"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "argument --timeout: a call timeout of 0.001 s cannot be measured" in err


def _open_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


@pytest.mark.slow  # a process under the limit; tests/test_distributed.py checks the count here
def test_too_many_ranks_for_the_open_files_limit_is_one_line(tmp_path: Path) -> None:
    done = run(
        "check", "--distributed", "40", "--max-examples", "2", "--seed", "0",
        "--json", str(tmp_path / "r.json"), preexec_fn=lambda: _open_files(64),
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    # Refused before any rank starts, with what they need and what to do.
    assert_one_error_line(done.stderr, "dpslice: error: 40 ranks need about ")
    assert "open files, and the limit here is 64 (ulimit -n); raise it" in done.stderr


# -- where the report goes: refused before the run, never over the target ------------------

VICTIM = "def f(*, global_num_tokens_cpu, dp_rank):\n    return 0, 0\n"


@pytest.mark.parametrize("flag", ["--json", "--junit-xml"])
def test_a_report_over_the_targets_own_file_is_refused(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim.py"
    victim.write_text(VICTIM)
    link = tmp_path / "link.json"
    link.symlink_to(victim)
    for path in (victim, link):
        assert main(["check", f"{victim}:f", "--max-examples", "2", flag, str(path)]) == 2
        assert_one_error_line(
            capsys.readouterr().err,
            f"dpslice: error: {flag} {path}: it is the target's source file {victim}",
        )
    assert victim.read_text() == VICTIM


def test_a_report_over_a_module_targets_file_is_refused_without_importing_it(
    tmp_path: Path,
) -> None:
    package = tmp_path / "victims"
    package.mkdir()
    # Importing the package would leave a trace: the check must find the file without it.
    (package / "__init__.py").write_text("open('imported', 'w').close()\n")
    (package / "impl.py").write_text(VICTIM)
    done = run(
        "check", "victims.impl:f", "--max-examples", "2", "--json", "victims/impl.py",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert_one_error_line(
        done.stderr,
        f"dpslice: error: --json victims/impl.py: it is the target's source file "
        f"{package / 'impl.py'}",
    )
    assert (package / "impl.py").read_text() == VICTIM
    assert not (tmp_path / "imported").exists()


def test_a_directory_or_the_same_file_twice_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--json", str(tmp_path)]) == 2
    assert_one_error_line(
        capsys.readouterr().err, f"dpslice: error: --json {tmp_path}: it is a directory"
    )
    both = str(tmp_path / "r.out")
    assert main(["check", "--json", both, "--junit-xml", both]) == 2
    assert_one_error_line(
        capsys.readouterr().err, "dpslice: error: --json and --junit-xml name the same file"
    )


def problem_as_nobody(path: Path) -> str | None:
    """:func:`output_problem` for ``path`` as the user nobody when this is root, whom
    permissions do not stop (in a forked child: nobody cannot start this Python)."""
    if os.geteuid() != 0:
        return output_problem(path)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(writer, json.dumps(output_problem(path)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as answer:
        text = answer.read()
    os.waitpid(child, 0)
    problem: str | None = json.loads(text)
    return problem


def test_a_path_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    sealed = Path(tempfile.mkdtemp())  # under /tmp: tmp_path's parents are root's alone
    try:
        (sealed / "kept.json").write_text("{}\n")
        (sealed / "kept.json").chmod(0o444)
        sealed.chmod(0o555)
        assert problem_as_nobody(sealed / "kept.json") == (
            "the file is not writable (its permissions); name another file"
        )
        assert problem_as_nobody(sealed / "new.json") == (
            f"directory {str(sealed)!r} is not writable; name a file in one you can write"
        )
    finally:
        sealed.chmod(0o755)
        shutil.rmtree(sealed)


@pytest.mark.slow  # a whole run for the write; the paths refused before a run are checked here
def test_a_report_is_written_through_a_symlink(tmp_path: Path) -> None:
    real, link = tmp_path / "reports" / "r.json", tmp_path / "r.json"
    real.parent.mkdir()
    link.symlink_to(real)  # dangling until the report is written
    done = run("check", "--max-examples", "2", "--seed", "0", "--property", "sum_len_rows",
               "--json", str(link))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert link.is_symlink()
    assert read_json(real)["passed"] is True


# -- reproduce lines that reproduce ----------------------------------------------------------

MY_CONTRACT = """\
from dpslice import Mode, Owns
from dpslice.contracts import Contract

MY = Contract(
    name="my-eager",
    summary="eager packed buffers only, whole blocks",
    modes=frozenset({Mode.SUM_LEN}),
    owns=Owns.PADDED_BLOCK,
)
LIKE_A_PRESET = Contract(
    name="sglang-capturer", summary="not sglang's capturer", modes=frozenset({Mode.SUM_LEN})
)
"""

OFF_BY_ONE = """\
def f(*, global_num_tokens_cpu, dp_rank):
    return sum(global_num_tokens_cpu[:dp_rank]) + 1, global_num_tokens_cpu[dp_rank]
"""


def reproduce_line(stdout: str, name: str) -> list[str]:
    """The words of the ``reproduce`` line under property ``name``'s block."""
    block = stdout[stdout.index(f"FAIL {name} ") :]
    line = next(line for line in block.splitlines() if line.startswith("  reproduce  "))
    return shlex.split(line.removeprefix("  reproduce  "))


def counterexample_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("  layout ", "  call "))]


# Two runs each: tests/test_check_report.py checks both reproduce lines in this process.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "given", "named"),
    [
        pytest.param(OFF_BY_ONE, ["--contract", "mycontract:MY"], True, id="contract-option"),
        pytest.param(
            "from mycontract import MY\n\n" + OFF_BY_ONE + "\nf.__dpslice_contract__ = MY\n",
            [],
            False,
            id="named-by-the-target",
        ),
    ],
)
def test_a_custom_contracts_reproduce_line_reproduces(
    tmp_path: Path, source: str, given: list[str], named: bool
) -> None:
    (tmp_path / "mycontract.py").write_text(MY_CONTRACT)
    (tmp_path / "impl.py").write_text(source)
    report = tmp_path / "r.json"
    args = ["check", "impl.py:f", *given, "--property", "sum_len_rows", "--property",
            "max_len_rows", "--max-examples", "20", "--seed", "1", "--quiet"]  # fmt: skip
    first = run(*args, "--json", str(report), cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "contract my-eager: eager packed buffers only" in first.stdout
    assert "max_len_rows                   N/A" in first.stdout  # judged as my-eager, indeed
    words = reproduce_line(first.stdout, "sum_len_rows")
    assert ("--contract" in words, "mycontract:MY" in words) == (named, named)
    assert shlex.split(read_json(report)["reproduce"])[:-4] == words[:-2]
    again = subprocess.run(
        [DPSLICE, *words[1:]], capture_output=True, text=True, timeout=180, check=False,
        cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 1, again.stdout + again.stderr
    assert "contract my-eager: " in again.stdout
    assert counterexample_lines(again.stdout) == counterexample_lines(first.stdout)


def test_a_contract_of_ones_own_named_like_a_preset_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mycontract.py").write_text(MY_CONTRACT)
    (tmp_path / "impl.py").write_text(OFF_BY_ONE)
    done = run("check", "impl.py:f", "--contract", "mycontract:LIKE_A_PRESET", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert_one_error_line(
        done.stderr,
        "dpslice: error: contract mycontract:LIKE_A_PRESET is named 'sglang-capturer', "
        "as a preset is",
    )


# -- a second signal while the first one's report is written ------------------------------

SIGNAL_TRIALS = 20

SLOW = """\
import time

def f(*, global_num_tokens_cpu, dp_rank):
    time.sleep(0.002)
    return 0, 0
"""


def two_signals(
    directory: Path, first: int, second: int, settle: float, gap: float, mode: list[str]
) -> str:
    """A run (in ``mode``) that gets ``first`` ``settle`` s after its target loaded, then
    ``second`` ``gap`` s later; what went wrong, or ``""``."""
    directory.mkdir()
    temporary = directory / "tmp"
    temporary.mkdir()
    (directory / "slow.py").write_text(SLOW)
    marker = uuid.uuid4().hex
    process = subprocess.Popen(
        [DPSLICE, "check", "slow.py:f", "--max-examples", "100000", "--seed", "0",
         "--json", "r.json", *mode],
        cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "DPSLICE_TEST_MARKER": marker, "TMPDIR": str(temporary)},
    )  # fmt: skip
    assert process.stderr is not None
    for _ in range(3):  # the header: printed once the worker loaded the target
        process.stderr.readline()
    time.sleep(settle)
    process.send_signal(first)
    time.sleep(gap)
    process.send_signal(second)
    _, err = process.communicate(timeout=60)
    deadline = time.monotonic() + 5
    while marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    expected = {130 if first == signal.SIGINT else 143}
    if mode:
        # The round trip's search runs in this process: two signals a few ms apart can
        # reach their handlers in the other order there (a known gap), so either status.
        expected = {130, 143}
    problems = [
        f"exit {process.returncode}, not {expected}" if process.returncode not in expected else "",
        "a traceback" if "Traceback" in err else "",
        "processes left" if marked_processes(marker) else "",
        f"left in TMPDIR: {os.listdir(temporary)}" if os.listdir(temporary) else "",
        "no report" if not (directory / "r.json").exists() else "",
    ]
    found = ", ".join(problem for problem in problems if problem)
    return f"{first.name}, {gap * 1000:.0f} ms, {second.name}: {found}\n{err}" if found else ""


@pytest.mark.slow  # 20 runs at random moments; test_check_supervisor.py interrupts one by default
@pytest.mark.parametrize("mode", [[], ["--distributed", "2"]], ids=["battery", "round-trip"])
def test_a_second_signal_while_stopping_changes_nothing(tmp_path: Path, mode: list[str]) -> None:
    rng = random.Random(20)
    trials = []
    for index in range(SIGNAL_TRIALS):
        first, second = rng.sample([signal.SIGINT, signal.SIGTERM, signal.SIGINT], 2)
        trials.append((tmp_path / str(index), first, second, rng.uniform(0.0, 0.3),
                       rng.uniform(0.0, 0.05), mode))  # fmt: skip
    with ThreadPoolExecutor(2) as lanes:
        problems = [found for found in lanes.map(lambda t: two_signals(*t), trials) if found]
    assert problems == [], "\n".join(problems)


# -- rough edges ------------------------------------------------------------------------------


@pytest.mark.parametrize("option", [["--contract", ""], ["--seed", "-1"], ["--seed", "1.5"]])
def test_an_empty_contract_or_a_seed_no_rerun_takes_is_a_usage_error(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["check", *option, "--list"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option[0]}: " in err
    assert "Traceback" not in err


@pytest.mark.slow  # the command line's line for it; tests/test_contracts.py checks the error here
def test_a_contract_module_that_fails_to_import_is_named_not_the_target(tmp_path: Path) -> None:
    (tmp_path / "mycontract.py").write_text("raise RuntimeError('the contract module broke')\n")
    (tmp_path / "impl.py").write_text(OFF_BY_ONE)
    done = run("check", "impl.py:f", "--contract", "mycontract:MY", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert_one_error_line(
        done.stderr,
        "dpslice: error: contract mycontract:MY: importing 'mycontract' raised RuntimeError: "
        "the contract module broke",
    )
