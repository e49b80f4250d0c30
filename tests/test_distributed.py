"""The slice against buffers gathered by real torch.distributed collectives.

Gloo on CPU here; the NCCL tests (marked ``cuda``) need two or more GPUs.
Every test that starts ranks checks afterwards that none is left running.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dpslice import DPLayout, Mode, SliceCall
from dpslice.check import CheckReport, Counterexample, PropertyResult, Verdict
from dpslice.check.report import render_text
from dpslice.check.target import load_target, target_from_callable
from dpslice.distributed import (
    RoundTripSession,
    check_counts_consistency,
    counts_disagreement,
    driver,
    run_round_trip,
    torchrun,
)
from dpslice.distributed.collectives import RowGatherer
from dpslice.distributed.driver import check_rank_count
from dpslice.distributed.errors import (
    GatherMismatchError,
    RankFailedError,
    RoundTripTimeoutError,
    TargetAbortedError,
)
from dpslice.distributed.worker import check_layout
from dpslice.errors import BadTargetError, CheckConfigError, CountsDisagreementError, RoundTripError

REFERENCE = "dpslice.reference:dp_local_slice"
TARGETS = Path(__file__).with_name("distributed_targets.py")
REFERENCE_SOURCE = Path(__file__).parents[1] / "dpslice" / "reference.py"

#: Layouts per DP size in the main round trips (the issue asks for at least 200).
ROUND_TRIP_EXAMPLES = 200
#: Budget for one whole run here: generous for a loaded 2-core machine, far below a hang.
RUN_TIMEOUT = 120.0


#: The exit code of distributed_targets.exit_on_rank_1.
EXIT_CODE = 7


def target(name: str) -> str:
    return f"{TARGETS}:{name}"


# -- no rank is ever left behind ---------------------------------------------


def child_processes(parent: int | None = None) -> list[tuple[int, str]]:
    """``(pid, command line)`` of the children of ``parent`` (this process), from ``/proc``.

    The stdlib's multiprocessing resource tracker is left out: spawning starts
    it once per process, by design, and it exits with its parent.
    """
    parent = os.getpid() if parent is None else parent
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # exited while we looked
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and "resource_tracker" not in cmdline:
            children.append((int(entry.name), cmdline.strip()))
    return children


@pytest.fixture
def no_orphans() -> Iterator[None]:
    """Fail the test if any rank (or zombie) it started outlives it.

    Children alive before it started (the shared :func:`gloo_pair`) are not its own.
    """
    import multiprocessing

    before = set(child_processes())
    alive_before = set(multiprocessing.active_children())
    yield
    assert set(multiprocessing.active_children()) <= alive_before
    assert set(child_processes()) <= before


def assert_gone(pids: tuple[int, ...]) -> None:
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"rank process {pid} still exists"


@pytest.fixture(scope="module")
def gloo_pair() -> Iterator[RoundTripSession]:
    """One two-rank gloo group shared by the tests whose targets leave the ranks alive."""
    with RoundTripSession(dp_size=2, layout_timeout=30) as session:
        yield session
    assert_gone(session.pids)
    assert child_processes() == []


# -- the round trip passes for the reference --------------------------------


def assert_passed(result: PropertyResult, examples: int) -> None:
    assert result.verdict is Verdict.PASS, result
    assert (result.name, result.counterexamples) == ("round_trip_rows", ())
    assert result.examples >= examples


def assert_report_passed(report: CheckReport, dp_size: int, examples: int) -> None:
    assert report.passed, render_text(report)
    (result,) = report.results
    assert_passed(result, examples)
    assert report.mode == "distributed"
    assert report.round_trip is not None
    assert report.round_trip.dp_size == dp_size
    assert report.round_trip.devices == ("cpu",) * dp_size


def failure(result: PropertyResult) -> Counterexample:
    """The result's one counterexample; the result must be a FAIL."""
    assert result.verdict is Verdict.FAIL, result
    (found,) = result.counterexamples
    return found


def test_reference_recovers_own_rows_through_a_gloo_pair(gloo_pair: RoundTripSession) -> None:
    """Every rank slices exactly its own rows out of buffers gloo really gathered."""
    result = gloo_pair.round_trip(REFERENCE, max_examples=ROUND_TRIP_EXAMPLES, seed=0)
    assert_passed(result, ROUND_TRIP_EXAMPLES)


@pytest.mark.slow  # four ranks on two cores; the default run has one and two
@pytest.mark.usefixtures("no_orphans")
def test_reference_recovers_own_rows_through_four_gloo_ranks() -> None:
    """The whole run, as ``dpslice check --distributed 4`` makes it: a report that holds."""
    report = run_round_trip(
        REFERENCE, dp_size=4, max_examples=ROUND_TRIP_EXAMPLES, seed=0, timeout=RUN_TIMEOUT
    )
    print(render_text(report))
    assert_report_passed(report, 4, ROUND_TRIP_EXAMPLES)
    assert report.seed == 0
    assert report.target.spec == REFERENCE


@pytest.mark.slow  # every collective trivial, or more ranks than cores: the default runs two
@pytest.mark.parametrize("dp_size", [1, 3])
@pytest.mark.usefixtures("no_orphans")
def test_round_trip_smoke_at_the_edges(dp_size: int) -> None:
    """One rank (every collective trivial) and an odd number of ranks, more than the
    2 cores CI has (eight ranks took a minute of start-up there, for nothing more)."""
    report = run_round_trip(REFERENCE, dp_size=dp_size, max_examples=15, timeout=RUN_TIMEOUT)
    assert_report_passed(report, dp_size, 15)


def test_tensor_bounds_from_the_gpu_counts_are_accepted(gloo_pair: RoundTripSession) -> None:
    """0-dim tensor bounds (the pre-#24550 GPU path) are read, and are right."""
    result = gloo_pair.round_trip(target("tensor_bounds"), max_examples=40, seed=0)
    assert_passed(result, 40)


# -- one rank's judgement is the battery's ----------------------------------


class OneRankGatherer(RowGatherer):
    """The gathers of a one-rank world, in process: each block is everything."""

    def __init__(self, corrupt_rows: bool = False) -> None:
        super().__init__()
        self.corrupt_rows = corrupt_rows

    def gather(self, block: torch.Tensor) -> torch.Tensor:
        if self.corrupt_rows and block.dim() == 2 and len(block):
            return block.flip(0)  # the rows, out of order
        return block.clone()


def sum_of_all_counts(global_num_tokens_cpu: list[int], dp_rank: int) -> tuple[int, int]:
    return sum(global_num_tokens_cpu), global_num_tokens_cpu[dp_rank]


@pytest.fixture
def one_rank_world(monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-rank world without a process group: the SUM_LEN all-reduce is the identity."""
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda tensor, **_: None)


@pytest.mark.usefixtures("one_rank_world")
def test_a_rank_judges_its_slice_with_the_batterys_own_judgement() -> None:
    """check_layout: the battery's judge_rows on the gathered buffer, its counterexample."""
    layout, cpu = DPLayout((3,)), torch.device("cpu")
    reference = load_target(REFERENCE)
    assert check_layout(layout, 0, reference, OneRankGatherer(), cpu) is None
    calls: list[object] = []

    class Observer:
        def calling(self, layout: DPLayout, call: SliceCall, gpu_counts: list[int]) -> None:
            calls.append((layout, call.global_num_tokens_cpu, gpu_counts))

        def returned(self) -> None:
            calls.append("returned")

    found = check_layout(
        layout, 0, target_from_callable(sum_of_all_counts), OneRankGatherer(), cpu,
        observer=Observer(),
    )  # fmt: skip
    assert found is not None
    assert (found.rank, found.outcome.slice, found.expected_slice) == (0, (3, 3), (0, 3))
    assert found.why == "rows [3, 6) run outside the 3-row buffer"
    assert calls == [(layout, [3], [3]), "returned"]
    assert repr(found.arguments["dp_rank"]) == "0"  # rendered: safe to send to the driver


@pytest.mark.usefixtures("one_rank_world")
def test_collectives_that_disagree_with_the_model_are_the_harness_failure() -> None:
    """A buffer the model would not build ends the run with no verdict: never the target's FAIL."""
    with pytest.raises(GatherMismatchError, match="the collectives' buffer") as raised:
        check_layout(
            DPLayout((2,), Mode.MAX_LEN), 0, load_target(REFERENCE), OneRankGatherer(True),
            torch.device("cpu"),
        )  # fmt: skip
    assert raised.value.rank == 0
    assert isinstance(raised.value, RoundTripError)


# -- the round trip fails for seeded bugs ------------------------------------


def mutated_reference(tmp_path: Path, name: str, pattern: str, replacement: str) -> Path:
    """A copy of dpslice/reference.py with every match of ``pattern`` replaced."""
    source, sites = re.subn(pattern, replacement, REFERENCE_SOURCE.read_text())
    assert sites >= 1, f"no {pattern!r} left in reference.py: update the seeded bug"
    path = tmp_path / f"{name}.py"
    path.write_text(source + SGLANG_SHAPED)
    return path


# The engine-shaped entry point, so the graph batch size and num_tokens_per_bs
# reach get_dp_local_slice_cpu as sglang passes them.
SGLANG_SHAPED = """

def sglang_shaped(global_num_tokens_cpu, dp_rank, dp_size, can_run_graph,
                  cuda_graph_batch, num_tokens_per_bs):
    from types import SimpleNamespace
    batch = SimpleNamespace(global_num_tokens_cpu=global_num_tokens_cpu)
    return get_dp_local_slice_cpu(batch, can_run_graph, cuda_graph_batch, dp_rank=dp_rank,
                                  dp_size=dp_size, num_tokens_per_bs=num_tokens_per_bs)
"""
GRAPH_BS_TIMES_TOKENS = r"extent = batch \* rows_per_request"


def test_off_by_one_prefix_sum_fails_with_a_shrunk_layout(
    tmp_path: Path, gloo_pair: RoundTripSession
) -> None:
    """start = sum(counts[:rank + 1]) is caught, shrunk to one token on one rank."""
    bug = mutated_reference(
        tmp_path, "off_by_one", r"sum\(counts\[:slot\]\)", "sum(counts[: slot + 1])"
    )
    found = failure(gloo_pair.round_trip(f"{bug}:dp_local_slice", max_examples=200, seed=0))
    print(found)
    assert found.outcome.slice is not None  # a wrong slice, not a crash
    assert found.why.startswith(("it covers", "it misses", "rows ["))
    # Shrunk: a single token on one rank is the least that exposes the bug.
    assert sum(found.layout.counts) == 1, found.layout
    assert found.layout.mode is Mode.SUM_LEN
    assert found.rank is not None
    assert found.expected_slice == (found.layout.span(found.rank).first_row, 1)


def test_graph_start_from_the_request_count_fails_on_a_later_rank(
    tmp_path: Path, gloo_pair: RoundTripSession
) -> None:
    """rank * cuda_graph_batch (not * num_tokens_per_bs) is caught under speculative replay."""
    bug = mutated_reference(
        tmp_path,
        "request_count",
        GRAPH_BS_TIMES_TOKENS,
        "extent = batch",
    )
    found = failure(gloo_pair.round_trip(f"{bug}:sglang_shaped", max_examples=200, seed=0))
    print(found)
    assert found.layout.mode is Mode.GRAPH_REPLAY
    assert found.layout.num_tokens_per_bs > 1  # only speculative decoding tells bs from extent
    if found.outcome.slice is None:  # handed bs as the extent, a full rank overflows it
        assert found.outcome.error == "CountExceedsExtentError"
    else:
        assert found.rank is not None
        assert found.rank >= 1
        bs = found.layout.graph_batch_size
        assert bs is not None
        assert found.outcome.slice[0] == found.rank * bs


def test_unmutated_copy_with_the_same_entry_point_passes(
    tmp_path: Path, gloo_pair: RoundTripSession
) -> None:
    """The control for the seeded bugs: the copy and its wrapper are not what fails."""
    control = mutated_reference(tmp_path, "control", r"def dp_local_slice\(", "def dp_local_slice(")
    result = gloo_pair.round_trip(f"{control}:sglang_shaped", max_examples=100, seed=0)
    assert_passed(result, 100)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("raise_on_rank_1", "a valid layout must give the rank its slice, not an error"),
        ("float_bounds", "the result is not a (start, length) slice"),
        ("mutate_gpu_counts_on_rank_1", "it changed global_num_tokens_gpu in place"),
    ],
)
def test_target_misbehaviour_is_a_counterexample_not_a_crash(
    name: str, why: str, gloo_pair: RoundTripSession
) -> None:
    """A raising, ill-typed or mutating target FAILs, judged as the battery judges it."""
    checked_before = gloo_pair.layouts_checked
    result = gloo_pair.round_trip(target(name), max_examples=50, seed=0)
    found = failure(result)
    print(found)
    assert found.function == name
    if name == "float_bounds":  # every rank returns floats: the lowest is shown
        assert found.rank == 0
        assert found.why == f"{why} (rank 1 fails too)"
    else:
        assert found.rank == 1
        assert found.why == why
    assert gloo_pair.layouts_checked - checked_before > 1  # shrinking ran on the same group
    if name == "mutate_gpu_counts_on_rank_1":
        assert found.layout == DPLayout((0, 0))  # shrunk to the least layout
    if name == "float_bounds":
        assert "start is the float" in found.outcome.describe()
    if name == "raise_on_rank_1":
        assert found.outcome.error == "KeyError"
        assert found.layout.mode is Mode.GRAPH_REPLAY


# -- a dead or stuck rank brings the group down, fast, with its error --------
#
# Each starts a group of its own (two processes that import torch), and most wait
# out a timeout: the slow stage's.  The command line's hung rank is in the default
# run (tests/test_check_supervisor.py).


@pytest.mark.slow
@pytest.mark.usefixtures("no_orphans")
def test_a_rank_whose_target_exits_fails_the_round_trip_with_the_call() -> None:
    """os._exit on rank 1 inside the target's call: a FAIL of that call, no hang."""
    began = time.monotonic()
    report = run_round_trip(target("exit_on_rank_1"), dp_size=2, max_examples=200, timeout=60)
    assert time.monotonic() - began < 60
    (result,) = report.results
    found = failure(result)
    assert result.note == "the call in flight, not shrunk: the group had to be killed"
    assert found.rank == 1
    assert f"with exit code {EXIT_CODE}" in found.outcome.describe()
    assert repr(found.arguments["dp_rank"]) == "1"
    # The target's own condition, on the counts it was handed (a graph pads them).
    assert sum(found.layout.call(1).global_num_tokens_cpu or ()) >= 3


@pytest.mark.slow
@pytest.mark.usefixtures("no_orphans")
def test_a_killed_rank_is_blamed_not_its_peer() -> None:
    """SIGKILL rank 1 between layouts: rank 0's gather breaks, but rank 1 is the cause."""
    with RoundTripSession(dp_size=2, layout_timeout=30) as session:
        assert session.check(DPLayout((2, 3)), REFERENCE) == (None, None)
        with pytest.raises(CheckConfigError):
            session.check(DPLayout((1, 2, 3)), REFERENCE)  # wrong DP size: refused unsent
        pids = session.pids
        os.kill(pids[1], signal.SIGKILL)
        began = time.monotonic()
        with pytest.raises(RankFailedError) as failed:
            session.check(DPLayout((4, 1), Mode.MAX_LEN), REFERENCE)
        assert time.monotonic() - began < 10
    assert failed.value.rank == 1
    assert failed.value.exitcode == -signal.SIGKILL
    assert "killed by signal 9" in str(failed.value)
    assert_gone(pids)


@pytest.mark.slow
@pytest.mark.usefixtures("no_orphans")
def test_a_stuck_rank_times_out_instead_of_hanging() -> None:
    """A rank stuck outside any call of the target raises RoundTripTimeoutError in its budget."""
    with RoundTripSession(dp_size=2, layout_timeout=2) as session:
        pids = session.pids
        began = time.monotonic()
        with pytest.raises(RoundTripTimeoutError) as timed_out:
            session.check(DPLayout((1, 1)), target("hang_on_rank_1"))
        assert time.monotonic() - began < 15
    assert timed_out.value.phase == "layout"
    assert timed_out.value.pending_ranks == (1,)
    assert "did not answer within" in str(timed_out.value)
    assert_gone(pids)


@pytest.mark.slow
@pytest.mark.usefixtures("no_orphans")
def test_a_call_that_hangs_is_the_targets_failure_with_the_call() -> None:
    """Past the call timeout a hung call is the target's counterexample, not a stuck rank."""
    with RoundTripSession(dp_size=2, layout_timeout=60, call_timeout=1) as session:
        pids = session.pids
        began = time.monotonic()
        with pytest.raises(TargetAbortedError) as aborted:
            session.check(DPLayout((1, 1)), target("hang_on_rank_1"))
        assert time.monotonic() - began < 10
    found = aborted.value.counterexample
    assert found.rank == 1
    assert found.outcome.describe().startswith("did not return within 1 s")
    shown = {name: repr(value) for name, value in found.arguments.items()}
    assert (shown["global_num_tokens_cpu"], shown["dp_rank"]) == ("[1, 1]", "1")
    assert_gone(pids)


def test_a_run_out_of_budget_keeps_the_layouts_it_checked(gloo_pair: RoundTripSession) -> None:
    """The run's budget stops the search between layouts; the verdict stands on those checked."""
    result = gloo_pair.round_trip(REFERENCE, max_examples=100_000, seed=0, timeout=1.0)
    assert result.verdict is Verdict.PASS
    assert result.examples > 0
    assert result.note is not None
    assert result.note.startswith("stopped early: the run's budget of 1 s ran out after")


@pytest.mark.slow  # a driver and two ranks, and two seconds for rank 1 to enter its call
def test_ranks_die_with_a_driver_killed_outright() -> None:
    """SIGKILL the driver (no cleanup runs): its ranks die with it, a stuck one too.

    Rank 1 is inside a target that never returns, so only the parent-death
    signal, not a closed pipe, can end it.
    """
    script = (
        "import sys\n"
        "from dpslice import DPLayout\n"
        "from dpslice.distributed import RoundTripSession\n"
        "with RoundTripSession(dp_size=2, layout_timeout=600) as session:\n"
        "    print('PIDS', *session.pids, flush=True)\n"
        "    session.check(DPLayout((1, 1)), sys.argv[1])\n"
    )
    command = [sys.executable, "-c", script, target("hang_on_rank_1")]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout is not None
        # Backends may print their own lines first (gloo on torch 2.9 does).
        marked = next(line for line in driver.stdout if line.startswith("PIDS "))
        pids = tuple(int(pid) for pid in marked.split()[1:])
        assert len(pids) == 2, "the driver did not start its ranks"
        time.sleep(2)  # let rank 1 enter the target
    finally:
        driver.kill()
        driver.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(running(pid) for pid in pids):
        time.sleep(0.1)
    survivors = [pid for pid in pids if running(pid)]
    for pid in survivors:  # leave nothing behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert survivors == [], "a rank outlived its driver"


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- the CPU/GPU counts validator --------------------------------------------


def test_counts_validator_accepts_agreeing_counts() -> None:
    check_counts_consistency([3, 4], torch.tensor([3, 4]), dp_rank=1)
    check_counts_consistency([7], torch.tensor([7]), dp_rank=0)
    check_counts_consistency(None, torch.tensor([2, 2]), dp_rank=0)  # capture: no CPU list


@pytest.mark.parametrize(
    ("cpu", "gpu", "detail"),
    [
        ([3, 4], [3, 5], "slot 1: cpu 4, gpu 5"),
        ([3, 4], [3, 4, 0], "the CPU list has 2 entries, the GPU tensor 3"),
    ],
    ids=["one-slot-differs", "length-differs"],
)
def test_counts_validator_reports_a_disagreement(
    cpu: list[int], gpu: list[int], detail: str
) -> None:
    """An injected disagreement is reported with the rank, both lists and the slot."""
    report = counts_disagreement(cpu, torch.tensor(gpu), dp_rank=1)
    assert report is not None
    assert detail in report
    with pytest.raises(CountsDisagreementError, match=re.escape(detail)) as raised:
        check_counts_consistency(cpu, torch.tensor(gpu), dp_rank=1)
    assert str(raised.value).startswith(f"rank 1: global_num_tokens_cpu {cpu} disagrees")


# -- loading and calling the target; configuration errors ---------------------


def test_target_is_passed_the_rank_s_own_counts_tensor() -> None:
    """The rank's gathered tensor is handed over as it is (a write to it must show)."""
    loaded = load_target(f"{TARGETS}:mutate_gpu_counts_on_rank_1")
    assert loaded.reads("global_num_tokens_gpu")
    gathered = torch.tensor([2, 3])
    arguments = loaded.arguments(DPLayout((2, 3)).call(1), gathered)
    assert arguments["global_num_tokens_gpu"] is gathered
    assert load_target(REFERENCE).arguments(DPLayout((2, 3)).call(1), gathered) == {
        "global_num_tokens_cpu": [2, 3], "dp_rank": 1, "dp_size": 2, "can_run_graph": False,
        "graph_extent": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("dpslice.reference", "target 'dpslice.reference' has no ':function' part"),
        ("dpslice.no_such_module:f", "module 'dpslice.no_such_module' not found"),
        ("dpslice.reference:no_such_function", "has no attribute 'no_such_function'"),
        ("dpslice.reference:get_dp_local_slice_cpu", "required parameter 'forward_batch'"),
        ("/no/such/file.py:f", "file '/no/such/file.py' not found"),
    ],
    ids=["no-function", "no-module", "no-attribute", "unpassable-argument", "no-file"],
)
@pytest.mark.usefixtures("no_orphans")
def test_bad_targets_are_refused_before_any_rank_starts(spec: str, match: str) -> None:
    """The check's one target loader, and its BadTargetError."""
    with pytest.raises(BadTargetError, match=re.escape(match)):
        run_round_trip(spec, dp_size=2)


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"dp_size": 0}, "dp_size=0"),
        ({"dp_size": 2, "backend": "mpi"}, "backend='mpi'"),
        ({"dp_size": 2, "timeout": 0}, "timeout=0"),
        ({"dp_size": 2, "max_examples": 0}, "max_examples=0"),
        ({"dp_size": 2, "seed": -1}, "seed=-1 must be an int >= 0"),
    ],
    ids=["dp-size", "backend", "timeout", "max-examples", "seed"],
)
@pytest.mark.usefixtures("no_orphans")
def test_bad_arguments_are_refused_before_any_rank_starts(
    arguments: dict[str, object], match: str
) -> None:
    with pytest.raises(CheckConfigError, match=re.escape(match)):
        run_round_trip(REFERENCE, **arguments)  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_orphans")
def test_more_ranks_than_the_round_trip_runs_are_refused_before_any_starts() -> None:
    with pytest.raises(CheckConfigError, match="640 ranks: the round trip runs at most 64,"):
        run_round_trip(REFERENCE, dp_size=640)


def test_ranks_that_would_not_fit_in_memory_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver, "available_memory", lambda: 2**30)
    assert check_rank_count(4) == 4  # 1.0 GiB for 1 GiB: they fit
    with pytest.raises(CheckConfigError) as refused:
        RoundTripSession(dp_size=5)
    assert str(refused.value) == (
        "5 ranks need about 1.2 GiB of memory (250 MiB each: every rank is a process that "
        "imports torch), and 1.0 GiB is available here (MemAvailable in /proc/meminfo); run "
        "at most 4 ranks, or free memory"
    )
    # Under torchrun the ranks are running already: their memory is spent.
    assert check_rank_count(5, spawning=False) == 5


def test_ranks_that_would_not_fit_in_the_open_files_limit_are_refused() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        with pytest.raises(CheckConfigError, match=r"^40 ranks need about \d+ open files, "):
            check_rank_count(40)
        at_most = re.escape("raise it (ulimit -n 1024) or run at most 48 ranks")
        with pytest.raises(CheckConfigError, match=at_most):
            check_rank_count(49, spawning=False)  # a rank: one socket per peer
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_nccl_without_enough_gpus_is_refused() -> None:
    too_many = torch.cuda.device_count() + 1
    with pytest.raises(CheckConfigError, match="one GPU per rank"):
        run_round_trip(REFERENCE, dp_size=too_many, backend="nccl")


# -- torchrun ----------------------------------------------------------------


@pytest.mark.slow  # torchrun and two ranks; the default run starts the entry as one rank
def test_torchrun_entry_point_round_trips() -> None:
    """``torchrun -m dpslice.distributed``: ranks from the environment, rank 0 drives."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "dpslice.distributed", "--max-examples", "50"]
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = runner.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        # torchrun starts each rank in a session of its own: end the ranks by
        # pid, or a hung one outlives the test.
        for pid, _ in child_processes(runner.pid):
            os.kill(pid, signal.SIGKILL)
        runner.kill()
        stdout, stderr = runner.communicate()
        pytest.fail(f"torchrun did not finish in {RUN_TIMEOUT} s:\n{stdout}{stderr}")
    assert runner.returncode == 0, stdout + stderr
    assert "round_trip_rows                PASS" in stdout, stdout
    assert stdout.startswith("dpslice check dpslice.reference:dp_local_slice --distributed 2")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def one_rank(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``python -m dpslice.distributed`` as the only rank of a group, or, with ``env``,
    in that environment instead of torchrun's."""
    if env is None:
        env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
        env["MASTER_PORT"] = str(free_port())
    ours = {key: value for key, value in os.environ.items() if key not in TORCHRUN_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "dpslice.distributed", *args],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False, cwd=cwd,
        env={**ours, "PYTHONPATH": str(Path(__file__).parents[1]), **env},
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def refused(
    args: list[str],
    env: dict[str, str] | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:
    """The torchrun entry's ``main`` in this process, in ``env`` instead of torchrun's (None:
    rank 0 of a one-rank group): its exit code, stdout and stderr.

    What it cannot run it refuses before any rank joins a group, so here it never
    joins one: a ``main`` that tried would fail the test.  ``python -m
    dpslice.distributed`` is this ``main`` and an exit with its code
    (test_the_torchrun_entry_runs_one_rank_and_keeps_the_verdict_when_its_budget_runs_out
    runs it).
    """
    if env is None:
        env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
        env["MASTER_PORT"] = str(free_port())
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def joined(*args: object, **kwargs: object) -> None:
        raise AssertionError("a rank joined the group: the refusal came too late")

    monkeypatch.setattr(torchrun, "join_group", joined)
    try:
        status = torchrun.main(args)
    except SystemExit as exit_:  # argparse's usage error
        status = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow
def test_the_torchrun_entry_runs_one_rank_and_keeps_the_verdict_when_its_budget_runs_out(
    tmp_path: Path,
) -> None:
    """As the driver does: the search stops between layouts and stands on those checked;
    and it leaves no Hypothesis directory behind."""
    status, out, err = one_rank(
        "--max-examples", "100000", "--seed", "0", "--timeout", "2", cwd=tmp_path
    )
    assert status == 0, out + err
    assert "round_trip_rows                PASS" in out
    assert "stopped early: the run's budget of 2 s ran out after" in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param(
            [],
            {},
            "dpslice: error: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT are not set: this "
            "runs one rank of a group that torchrun starts",
            id="outside-torchrun",
        ),
        pytest.param(
            [],
            {"RANK": "1", "WORLD_SIZE": "x", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
            "dpslice: error: WORLD_SIZE='x' is not an int >= 1",
            id="world-size",
        ),
        pytest.param(
            [],
            {"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
            "dpslice: error: RANK=2 is not a rank of a group of WORLD_SIZE=2",
            id="rank",
        ),
        pytest.param(
            ["--target", "dpslice.no_such_module:f"],
            None,
            "dpslice: error: module 'dpslice.no_such_module' not found",
            id="bad-target",
        ),
        pytest.param(
            [],
            {"RANK": "0", "WORLD_SIZE": "65", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
            "dpslice: error: 65 ranks: the round trip runs at most 64",
            id="too-many-ranks",
        ),
    ],
)
def test_the_torchrun_entry_refuses_what_it_cannot_run_in_one_line(
    args: list[str],
    env: dict[str, str] | None,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = refused(args, env, monkeypatch, capsys)
    assert (status, out) == (2, ""), err
    assert err.startswith(message), err
    assert err.count("\n") == 1, err


@pytest.mark.parametrize(
    "option",
    [["--max-examples", "0"], ["--layout-timeout", "0"], ["--timeout", "nan"], ["--seed", "x"]],
    ids=["max-examples", "layout-timeout", "timeout", "seed"],
)
def test_the_torchrun_entry_refuses_bad_options_as_usage_errors(
    option: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = refused(option, None, monkeypatch, capsys)
    assert (status, out) == (2, ""), err
    assert f"error: argument {option[0]}: " in err
    assert "Traceback" not in err


# -- NCCL, one process per GPU ----------------------------------------------


#: Layouts per DP size on GPUs; DPSLICE_NCCL_EXAMPLES raises it for a long device run.
NCCL_EXAMPLES = int(os.environ.get("DPSLICE_NCCL_EXAMPLES", "200"))


@pytest.mark.cuda
@pytest.mark.parametrize("dp_size", [2, 4])
@pytest.mark.usefixtures("no_orphans")
def test_reference_recovers_own_rows_through_nccl(dp_size: int) -> None:
    """Every GPU rank slices exactly its own rows out of buffers NCCL really gathered."""
    if torch.cuda.device_count() < dp_size:
        pytest.skip(f"needs {dp_size} GPUs; {torch.cuda.device_count()} visible")
    report = run_round_trip(
        REFERENCE, dp_size=dp_size, backend="nccl", max_examples=NCCL_EXAMPLES, timeout=500
    )
    print(render_text(report))
    assert report.passed, render_text(report)
    assert report.results[0].examples >= NCCL_EXAMPLES
    assert report.round_trip is not None
    assert all(device.startswith("cuda:") for device in report.round_trip.devices)
