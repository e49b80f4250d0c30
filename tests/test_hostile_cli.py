"""``dpslice check``'s own failure modes: never a traceback, never the target blamed for
what is not its doing, never a report lost or one that says what did not happen."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dpslice.check.progress import Progress
from dpslice.cli import main

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
    assert done.stdout == ""  # the target never loaded: no report to print or write
    assert not report.exists()


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
    args = ["check", "--max-examples", "2", "--seed", "0", "--json", str(report)]
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


def _open_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def test_too_many_ranks_for_the_open_files_limit_is_one_line(tmp_path: Path) -> None:
    done = run(
        "check", "--distributed", "40", "--max-examples", "2", "--seed", "0",
        "--json", str(tmp_path / "r.json"), preexec_fn=lambda: _open_files(64),
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert_one_error_line(done.stderr, "dpslice: error: ")
    assert "open files" in done.stderr
