"""``dpslice check`` from the outside: exit codes, one-line errors, --json, --list, --seed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from dpslice import __version__
from dpslice.cli import main

AS_MERGED = "dpslice.specimens.upstream:get_dp_local_slice_cpu_as_merged"
DPSLICE = shutil.which("dpslice") or str(Path(sys.executable).with_name("dpslice"))


def run(*args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dpslice", *args] if module else [DPSLICE, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def read_json(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_version() -> None:
    done = run("--version")
    assert (done.returncode, done.stdout) == (0, f"dpslice {__version__}\n")


def test_the_reference_passes_with_exit_0(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = run("check", "--max-examples", "10", "--seed", "0", "--json", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("dpslice check dpslice.reference:dp_local_slice\nseed 0  ")
    assert done.stdout.endswith("\nPASSED\n")
    document = read_json(report)
    assert document["passed"] is True
    totals = document["totals"]
    # On the CPU the CUDA view property does not apply, and sglang's capturer never chunks.
    assert (totals["passed"], totals["not_applicable"]) == (totals["properties"] - 2, 2)
    assert totals["warned"] == totals["failed"] == 0
    assert totals["properties"] >= 12
    assert all(prop["counterexample"] is None for prop in document["properties"])
    sync_free = next(prop for prop in document["properties"] if prop["name"] == "sync_free")
    assert sync_free["note"].startswith("dpslice.sync CPU-only mode")


_PARENT_MODULES = """
import atexit, sys
from dpslice.cli import main
atexit.register(lambda: print("loaded:", *sorted({"torch", "hypothesis"} & set(sys.modules))))
sys.exit(main(sys.argv[1:]))
"""


def test_the_supervising_process_imports_neither_torch_nor_hypothesis(tmp_path: Path) -> None:
    # Only the worker runs the target, so only the worker pays for importing torch;
    # the process that reports stays light, and a failing FAIL report still renders.
    report = tmp_path / "report.json"
    args = ["check", AS_MERGED, "--max-examples", "5", "--seed", "1", "--json", str(report)]
    done = subprocess.run(
        [sys.executable, "-c", _PARENT_MODULES, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "loaded:", done.stdout
    assert read_json(report)["versions"]["torch"] == torch.__version__


FAILING_ARGS = ("check", AS_MERGED, "--max-examples", "30", "--seed", "1")


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, dict[str, Any]]:
    """``python -m dpslice check`` on the as-merged upstream model, once for the module."""
    report = tmp_path_factory.mktemp("failing") / "report.json"
    done = run(*FAILING_ARGS, "--json", str(report), module=True)
    return done.returncode, done.stdout, read_json(report)


def test_a_failing_target_exits_1_and_keeps_its_results(
    failing_run: tuple[int, str, dict[str, Any]],
) -> None:
    returncode, stdout, document = failing_run
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


def test_the_same_seed_reproduces_the_counterexamples_in_another_process(
    failing_run: tuple[int, str, dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    again = tmp_path / "again.json"
    assert main([*FAILING_ARGS, "--json", str(again)]) == 1
    capsys.readouterr()

    def counterexamples(document: dict[str, Any]) -> dict[str, Any]:
        return {prop["name"]: prop["counterexample"] for prop in document["properties"]}

    first = counterexamples(failing_run[2])
    assert counterexamples(read_json(again)) == first
    assert first["graph_replay_rows"] is not None


def test_a_bad_target_is_one_line_on_stderr_and_exit_2() -> None:
    done = run("check", "dpslice.no_such_module:f")
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


BAD_TARGETS = [
    pytest.param(["nocolon"], "has no ':function' part", id="no-colon"),
    pytest.param(["missing/impl.py:f"], "file 'missing/impl.py' not found", id="no-file"),
    pytest.param(["dpslice.reference:nope"], "has no attribute 'nope'", id="no-attribute"),
    pytest.param(["--property", "nope"], "no property named 'nope'; choose from", id="property"),
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
    assert (document["schema"], document["mode"]) == ("dpslice-check/3", "distributed")
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
    assert "\nERROR round_trip_rows: the round trip reached no verdict: RoundTripTimeout: " in out
    assert out.endswith("\nFAILED\n")
    document = read_json(report)
    assert document["passed"] is False
    (prop,) = document["properties"]
    assert (prop["verdict"], prop["examples"]) == ("ERROR", 0)
    assert "RoundTripTimeout: rank(s) [0]" in prop["note"]
    assert "--run-timeout 0.001" in document["reproduce"]


# -- contracts and tiers -------------------------------------------------------------------

CAPTURER = "tests/targets/capturers.py:running_sum"


def test_list_contracts_names_each_preset_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list-contracts"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert names == ["sglang-capturer", "sglang-gather", "vllm-dp", "vllm-chunked"]
    assert "sglang-capturer (default)" in out


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


def test_an_unknown_contract_is_one_line_and_exit_2() -> None:
    result = run("check", CAPTURER, "--contract", "sglang")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dpslice: error: no contract named 'sglang'; choose from sglang-capturer, "
        "sglang-gather, vllm-dp, vllm-chunked or name your own as module:NAME"
    ]
