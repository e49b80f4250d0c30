"""``dpslice check NEW --against OLD``: two implementations compared in every state the
contract reaches, through the command line, run_check and the pytest plugin."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dpslice.check import Verdict, run_check
from dpslice.check.report import render_text, to_json
from dpslice.errors import BadTargetError
from tests.targets.sources import MINIMAL_CAPTURER

TARGETS = Path(__file__).parent / "targets"
LOOPS = str(TARGETS / "loops.py")
AGAINST = str(TARGETS / "against.py")
CAPTURERS = str(TARGETS / "capturers.py")
REFERENCE = "dpslice.reference:dp_local_slice"
AS_MERGED = "dpslice.specimens.upstream:get_dp_local_slice_cpu_as_merged"
TENSOR_PATH = "dpslice.specimens.tensor_path:tensor_path_slice"
UPSTREAM = "dpslice.specimens.upstream"
DPSLICE = shutil.which("dpslice") or str(Path(sys.executable).with_name("dpslice"))
pytest_plugins = ["pytester"]

COMPARED = ["same_slice_as_against", "same_refusals_as_against", "against_sync_free"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DPSLICE, "check", *args, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def compared(new: str, old: str, **options: Any) -> Any:
    options.setdefault("max_examples", 150)
    options.setdefault("seed", 0)
    options.setdefault("properties", COMPARED)
    return run_check(new, against=old, **options)


@pytest.mark.parametrize(
    ("new", "old"),
    [
        (f"{LOOPS}:capturer_loop", REFERENCE),
        # The capturer contract's pair is compared by default with the reference and
        # with the README's capturer; a third capturer pair runs in the slow stage.
        pytest.param(f"{LOOPS}:capturer_loop", f"{CAPTURERS}:running_sum", marks=pytest.mark.slow),
        ("README_CAPTURER", f"{CAPTURERS}:sglang_shaped"),
        (f"{LOOPS}:gather_loop", f"{UPSTREAM}:get_dp_local_info_in_graph"),
        (f"{LOOPS}:combine_loop", f"{UPSTREAM}:vllm_combine_slice"),
        (f"{LOOPS}:chunked_loop", f"{UPSTREAM}:vllm_chunked_slice"),
    ],
    ids=[
        "capturer-reference",
        "capturer-running-sum",
        "readme-sglang-shaped",
        "gather",
        "vllm-dp",
        "vllm-chunked",
    ],
)
# The specimens index a tensor with what they are handed; an invalid call's list
# rank makes torch warn about it, in this process, where run_check calls them.
@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")
def test_two_correct_implementations_agree_under_their_contract(
    new: str, old: str, tmp_path: Path
) -> None:
    if new == "README_CAPTURER":
        (tmp_path / "my_engine_slice.py").write_text(MINIMAL_CAPTURER)
        new = f"{tmp_path / 'my_engine_slice.py'}:local_slice"
    report = compared(new, old)
    same = report.result("same_slice_as_against")
    assert same.verdict is Verdict.PASS, render_text(report)
    assert same.examples == 150
    assert report.result("against_sync_free").verdict is Verdict.PASS
    # Both are correct: they may refuse invalid inputs differently, which only WARNs.
    assert report.result("same_refusals_as_against").verdict in (Verdict.PASS, Verdict.WARN)
    assert report.passed


@pytest.mark.slow  # the command line's --against: the as-merged model's run, in the default run
def test_the_cli_exits_0_when_two_correct_implementations_agree() -> None:
    done = run(
        f"{LOOPS}:capturer_loop", "--against", REFERENCE, "--seed", "0", "--max-examples", "100"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"dpslice check {LOOPS}:capturer_loop --against {REFERENCE}\n")
    rows = {
        line.split()[0]: line.split()[1]
        for line in done.stdout.splitlines()
        if line.split()[:1] and line.split()[0] in COMPARED
    }
    assert rows["same_slice_as_against"] == "PASS"
    assert done.stdout.endswith("\nPASSED\n")


def test_an_off_by_one_disagrees_shrunk_to_two_ranks() -> None:
    report = compared(f"{AGAINST}:off_by_one", REFERENCE, properties=["same_slice_as_against"])
    same = report.result("same_slice_as_against")
    assert same.verdict is Verdict.FAIL
    found = same.counterexample
    assert found is not None
    assert found.layout.dp_size <= 2
    assert found.rank == 1
    (old,) = found.related
    assert old.label == "against"
    assert old.call.startswith("dp_local_slice(")
    assert found.why.endswith("--against is right, the target is wrong")
    assert not report.passed


def test_the_as_merged_model_against_the_tensor_path_exits_1_with_the_oracles_verdict(
    tmp_path: Path,
) -> None:
    report_path = tmp_path / "report.json"
    # The comparisons alone, in one worker: test_the_as_merged_model_fails_exactly_its_hazards
    # (tests/test_check_contracts.py) judges the rest of the battery on the same target.
    comparisons = [arg for name in COMPARED for arg in ("--property", name)]
    done = run(
        AS_MERGED,
        "--against",
        TENSOR_PATH,
        "--seed",
        "1",
        "--max-examples",
        "100",
        "--json",
        str(report_path),
        "-j",
        "1",
        *comparisons,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    document = json.loads(report_path.read_text())
    assert document["against"] == TENSOR_PATH
    assert f"--against {TENSOR_PATH}" in document["reproduce"]
    (same,) = (p for p in document["properties"] if p["name"] == "same_slice_as_against")
    assert same["verdict"] == "FAIL"
    found = same["counterexample"]
    # The smallest disagreement: capture on one rank, where the CPU counts are None.
    assert found["layout"] == "DPLayout(counts=(1,), mode=Mode.GRAPH_CAPTURE, graph_batch_size=1)"
    assert found["outcome"]["kind"] == "incidental"
    (old,) = found["related"]
    assert old["label"] == "against"
    assert old["call"].startswith("tensor_path_slice(")
    assert old["outcome"] == "returned (0, 1): rows r0[0]"
    assert found["expected"]["slice"] == [0, 1]
    assert found["why"] == (
        "the target crashes, --against returns (0, 1): --against is right, the target is wrong"
    )
    text = done.stdout
    assert "  against    tensor_path_slice(global_num_tokens_gpu=tensor([1]), dp_rank=0" in text
    assert (
        f"reproduce  dpslice check {AS_MERGED} --against {TENSOR_PATH} --seed 1 "
        "--max-examples 100 --property same_slice_as_against" in text
    )
    # The tensor path's bounds are 0-dim tensors: slicing with them syncs, reported for it.
    (old_sync,) = (p for p in document["properties"] if p["name"] == "against_sync_free")
    assert old_sync["verdict"] == "WARN"


def test_a_pair_that_differs_only_in_syncing_the_exit_status_follows_sync_free() -> None:
    syncs, clean = f"{AGAINST}:reads_device_counts", f"{LOOPS}:capturer_loop"
    new_syncs = compared(
        syncs, clean, properties=["same_slice_as_against", "sync_free", "against_sync_free"]
    )
    assert new_syncs.result("same_slice_as_against").verdict is Verdict.PASS
    assert new_syncs.result("sync_free").verdict is Verdict.FAIL
    assert new_syncs.result("against_sync_free").verdict is Verdict.PASS
    assert not new_syncs.passed  # the target syncs: a hazard, exit 1
    old_syncs = compared(
        clean, syncs, properties=["same_slice_as_against", "sync_free", "against_sync_free"]
    )
    assert old_syncs.result("same_slice_as_against").verdict is Verdict.PASS
    assert old_syncs.result("sync_free").verdict is Verdict.PASS
    old = old_syncs.result("against_sync_free")
    assert old.verdict is Verdict.WARN
    assert old.counterexample is not None
    assert "Tensor.__int__" in old.counterexample.why
    assert old_syncs.passed  # OLD's sync is reported, not held against the target
    text = render_text(old_syncs)
    assert "\nagainst_sync_free              WARN " in text
    assert "\nsync_free                      PASS " in text


@pytest.mark.slow  # two runs; the verdicts behind the exit status are checked in this process
def test_the_cli_exit_status_for_syncing_pairs() -> None:
    syncs, clean = f"{AGAINST}:reads_device_counts", f"{LOOPS}:capturer_loop"
    options = (
        "--seed",
        "0",
        "--max-examples",
        "50",
        "--property",
        "same_slice_as_against",
        "--property",
        "sync_free",
        "--property",
        "against_sync_free",
    )
    assert run(syncs, "--against", clean, *options).returncode == 1
    assert run(clean, "--against", syncs, *options).returncode == 0


def test_the_same_seed_gives_the_same_verdicts_and_counterexamples() -> None:
    first, second = (
        to_json(compared(AS_MERGED, TENSOR_PATH, seed=5, max_examples=30)) for _ in range(2)
    )
    for document in (first, second):
        for prop in document["properties"]:
            prop.pop("seconds")
        document.pop("seconds", None)
        document["totals"].pop("seconds", None)
        document.pop("versions", None)
    assert first["properties"] == second["properties"]
    verdicts = {p["name"]: p["verdict"] for p in first["properties"]}
    assert verdicts["same_slice_as_against"] == "FAIL"


@pytest.mark.parametrize(
    ("against", "cause"),
    [
        (
            "dpslice.specimens.tensor_path:no_such_slice",
            "'dpslice.specimens.tensor_path' has no attribute 'no_such_slice'",
        ),
        ("no_colon", "target 'no_colon' has no ':function' part"),
        ("no_such_module_here:f", "module 'no_such_module_here' not found"),
    ],
)
def test_a_bad_against_target_is_refused_naming_against(against: str, cause: str) -> None:
    with pytest.raises(BadTargetError, match=re.escape(f"bad --against target {against}: {cause}")):
        run_check(against=against)


@pytest.mark.slow  # three runs; the test above checks each message in this process
def test_a_bad_against_target_is_exit_2_naming_against() -> None:
    done = run(REFERENCE, "--against", "dpslice.specimens.tensor_path:no_such_slice")
    assert done.returncode == 2
    assert done.stderr.startswith(
        "dpslice: error: bad --against target dpslice.specimens.tensor_path:no_such_slice: "
    )
    done = run(REFERENCE, "--against", "no_colon")
    assert done.returncode == 2
    assert "bad --against target no_colon: " in done.stderr
    done = run(REFERENCE, "--against", "no_such_module_here:f")
    assert done.returncode == 2
    assert "bad --against target no_such_module_here:f: module" in done.stderr


def test_without_against_the_comparisons_do_not_run() -> None:
    report = run_check(max_examples=5, seed=0)
    names = [result.name for result in report.results]
    assert not set(COMPARED) & set(names)
    alone = run_check(max_examples=5, seed=0, properties=["same_slice_as_against"])
    assert alone.results[0].verdict is Verdict.NOT_APPLICABLE
    assert "--against" in (alone.results[0].note or "")


@pytest.mark.slow
def test_the_comparisons_run_as_pytest_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_refactor_pair=f"""
from dpslice.pytest_plugin import check_properties

test_refactor = check_properties(
    {AGAINST + ":off_by_one"!r}, against={REFERENCE!r}, max_examples=20, seed=0
)
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "against")
    result.assert_outcomes(passed=2, failed=1, deselected=14)
    result.stdout.fnmatch_lines(["*FAILED*test_refactor[[]same_slice_as_against[]]*"])


@pytest.mark.slow  # two sessions; check_properties(against=...) runs the same in the default run
def test_the_against_option_of_the_plugin(pytester: pytest.Pytester) -> None:
    args = ("-p", "no:cacheprovider", "--dpslice-target", f"{LOOPS}:capturer_loop")
    result = pytester.runpytest(
        *args,
        "--dpslice-against",
        REFERENCE,
        "--dpslice-seed",
        "0",
        "--dpslice-max-examples",
        "50",
        "-k",
        "same_slice_as_against",
    )
    result.assert_outcomes(passed=1, deselected=16)
    result = pytester.runpytest(*args, "--dpslice-against", "no_colon", "--co")
    assert "bad --against target no_colon" in result.stderr.str() + result.stdout.str()


def test_only_defects_both_sides_can_see_are_compared() -> None:
    # The tensor path takes neither dp_size nor CPU counts: a defect there never
    # reaches it, so its slice is no answer to the invalid call and is not compared.
    report = compared(REFERENCE, TENSOR_PATH, properties=["same_refusals_as_against"])
    refusals = report.result("same_refusals_as_against")
    assert refusals.verdict is Verdict.WARN, render_text(report)
    kinds = {found.kind for found in refusals.counterexamples}
    assert kinds == {
        "bool dp_rank",
        "bool graph_extent",
        "non-integer dp_rank",
        "non-integer graph_extent",
        "tensor dp_rank",
        "negative graph extent",
    }
    for found in refusals.counterexamples:
        assert "dp_size" not in (found.kind or "")
        assert "count" not in (found.kind or "")
