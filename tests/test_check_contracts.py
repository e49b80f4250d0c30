"""The battery under contracts: verdicts that hold on engine code.

Correct implementations pass where their call site is reached; the models of
upstream fail exactly their real hazards; a slice right for one call site
fails at another; hardening findings WARN, all kinds in one run.
"""

from __future__ import annotations

import pytest

from dpslice.check import Verdict, run_check
from dpslice.check.outcome import OutcomeKind
from dpslice.check.registry import Tier
from tests.targets.capturers import IMPLEMENTATIONS

CAPTURERS = "tests/targets/capturers.py"
HAZARDS_OF_AS_MERGED = {
    # the speculative-decoding offset: rank r starts at r * bs, not r * bs * num_tokens_per_bs
    "graph_replay_rows": "does not own",
    "ranks_disjoint_in_bounds": "overlaps",
    "large_counts_exact": "the start is",
    # sglang #30712: a prefill graph's cuda_graph_batch is None and rank * None crashes
    "prefill_graph_rows": "incidental TypeError: unsupported operand",
    # the capture phase: None counts
    "capture_phase_explicit": "incidental TypeError: 'NoneType' object is not subscriptable",
    # the version as merged indexes a one-entry list by the rank
    "skipped_gather_rows": "incidental IndexError",
}


def _failed(report) -> dict[str, str]:
    return {
        result.name: f"{result.counterexample.outcome.describe()} / {result.counterexample.why}"
        for result in report.results
        if result.verdict is Verdict.FAIL
    }


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=lambda f: f.__name__)
def test_a_correct_capturer_passes_and_only_warns_on_hardening(implementation) -> None:
    report = run_check(f"{CAPTURERS}:{implementation.__name__}", max_examples=60, seed=3)
    assert report.passed, _failed(report)
    verdicts = {result.name: result.verdict for result in report.results}
    assert verdicts["invalid_inputs_refused"] is Verdict.WARN
    assert {name for name, verdict in verdicts.items() if verdict is Verdict.FAIL} == set()


@pytest.mark.parametrize(
    "implementation",
    # strict changes the hardening tier's verdict alone, whatever the target: one
    # capturer by default, a second in the slow stage.
    [IMPLEMENTATIONS[0], pytest.param(IMPLEMENTATIONS[1], marks=pytest.mark.slow)],
    ids=lambda f: getattr(f, "__name__", None),
)
def test_strict_fails_a_correct_capturer_on_hardening_only(implementation) -> None:
    report = run_check(
        f"{CAPTURERS}:{implementation.__name__}", max_examples=40, seed=3, strict=True
    )
    assert not report.passed
    assert report.failed == ("invalid_inputs_refused",)


@pytest.fixture(scope="module")
def as_merged():
    """The whole battery on the model as merged, once for the tests that read it."""
    return run_check(
        "dpslice.specimens.upstream:get_dp_local_slice_cpu_as_merged", max_examples=150, seed=2
    )


def test_the_model_as_merged_fails_exactly_its_hazards(as_merged) -> None:
    report = as_merged
    failed = _failed(report)
    assert set(failed) == set(HAZARDS_OF_AS_MERGED), failed
    for name, fragment in HAZARDS_OF_AS_MERGED.items():
        assert fragment in failed[name], (name, failed[name])
    assert report.result("invalid_inputs_refused").verdict is Verdict.WARN


def test_the_dp_slot_in_model_handles_a_skipped_gather() -> None:
    report = run_check(
        "dpslice.specimens.upstream:get_dp_local_slice_cpu_dp_slot_in", max_examples=150, seed=2
    )
    assert set(_failed(report)) == set(HAZARDS_OF_AS_MERGED) - {"skipped_gather_rows"}


def test_the_speculative_decoding_offset_shrinks_to_two_ranks(as_merged) -> None:
    # Read from the whole battery's run: a property's search depends on the seed, not on
    # which other properties run (tests/test_check_battery.py shrinks it alone, seed 1).
    counterexample = as_merged.result("graph_replay_rows").counterexample
    assert counterexample is not None
    assert repr(counterexample.layout) == (
        "DPLayout(counts=(0, 1), mode=Mode.GRAPH_REPLAY, graph_batch_size=1, num_tokens_per_bs=2)"
    )
    assert (counterexample.rank, counterexample.outcome.slice) == (1, (1, 1))


def test_get_dp_local_info_passes_where_the_engine_calls_it_and_fails_as_a_capturer() -> None:
    """Its bounds are a rank's whole block: right for a scatter, wrong for a capturer."""
    spec = "dpslice.specimens.upstream:get_dp_local_info_in_graph"
    gather = run_check(spec, max_examples=100, seed=1)
    assert gather.contract.name == "sglang-gather"  # the target names it
    assert gather.passed, _failed(gather)
    assert gather.result("sync_free").verdict is Verdict.PASS
    capturer = run_check(
        spec, max_examples=100, seed=1, contract="sglang-capturer", properties=["graph_replay_rows"]
    )
    assert "graph_replay_rows" in capturer.failed


@pytest.mark.parametrize(
    ("spec", "contract"),
    [
        ("dpslice.specimens.upstream:vllm_combine_slice", "vllm-dp"),
        ("dpslice.specimens.upstream:vllm_chunked_slice", "vllm-chunked"),
    ],
)
def test_the_vllm_slices_pass_under_their_contracts(spec: str, contract: str) -> None:
    report = run_check(spec, max_examples=100, seed=1)
    assert report.contract.name == contract
    assert report.passed, _failed(report)
    assert report.result("sync_free").verdict is Verdict.PASS  # host-resident counts


def test_the_capturer_rule_applied_to_a_chunk_fails_with_a_shrunk_counterexample() -> None:
    report = run_check(
        f"{CAPTURERS}:running_sum",
        max_examples=300,
        seed=1,
        contract="vllm-chunked",
        properties=["dp_chunk_rows"],
    )
    counterexample = report.result("dp_chunk_rows").counterexample
    assert counterexample is not None
    # One rank of two tokens in chunks of one: the capturer takes both.
    assert repr(counterexample.layout) == "DPLayout(counts=(2,), mode=Mode.DP_CHUNK, chunk_size=1)"
    assert counterexample.outcome.slice == (0, 2)


def test_hardening_lists_every_kind_it_accepts_in_one_run() -> None:
    report = run_check(
        f"{CAPTURERS}:running_sum", max_examples=200, seed=1, properties=["invalid_inputs_refused"]
    )
    result = report.result("invalid_inputs_refused")
    assert (result.verdict, result.tier) == (Verdict.WARN, Tier.HARDENING)
    kinds = [counterexample.kind for counterexample in result.counterexamples]
    assert len(kinds) == len(set(kinds)) >= 5
    assert {"bool dp_size", "count over the extent", "tensor counts"} <= set(kinds)


def test_a_property_the_contract_never_reaches_is_not_applicable() -> None:
    report = run_check(
        f"{CAPTURERS}:running_sum", max_examples=20, seed=1, properties=["dp_chunk_rows"]
    )
    result = report.result("dp_chunk_rows")
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert result.note == "the sglang-capturer contract never reaches DP_CHUNK"


def test_a_user_contract_named_by_the_target() -> None:
    report = run_check("tests.targets.engines:packed_slice", max_examples=100, seed=1)
    assert report.contract.name == "packed-only"
    assert report.passed, _failed(report)
    ran = {r.name for r in report.results if r.verdict is not Verdict.NOT_APPLICABLE}
    assert "graph_replay_rows" not in ran
    assert "sum_len_rows" in ran


def test_a_mutated_input_fails_with_the_call_as_it_was_made() -> None:
    def pops(*, global_num_tokens_cpu, dp_rank):
        start = sum(global_num_tokens_cpu[:dp_rank])
        length = global_num_tokens_cpu.pop(dp_rank)
        return start, length

    report = run_check(
        pops, max_examples=100, seed=1, properties=["inputs_unchanged", "sum_len_rows"]
    )
    assert report.result("sum_len_rows").verdict is Verdict.PASS
    counterexample = report.result("inputs_unchanged").counterexample
    assert counterexample is not None
    assert counterexample.why == "it changed global_num_tokens_cpu in place"
    assert counterexample.arguments[
        "global_num_tokens_cpu"
    ] == counterexample.layout.global_num_tokens_cpu(counterexample.rank)


def _raise_value_error():
    raise ValueError("no")


def _raise_type_error():
    raise TypeError("capture has no counts")


def _subscript_none():
    counts = None
    return counts[0]  # type: ignore[index]


def _multiply_none():
    return 3 * None  # type: ignore[operator]


def _assert_false():
    assert False, "unreachable"  # noqa: B011, PT015


def _convert_text():
    return int("three")


def _reraise_as_own():
    counts = None
    try:
        return counts[0]  # type: ignore[index]
    except TypeError as exc:
        raise LookupError("capture: no counts") from exc


def _torch_shape_error():
    import torch

    return torch.zeros(2) + torch.zeros(3)


def _memory():
    raise MemoryError("out of memory")


@pytest.mark.parametrize(
    ("raises", "kind"),
    [
        (_raise_value_error, OutcomeKind.DELIBERATE),
        (_raise_type_error, OutcomeKind.DELIBERATE),
        (_reraise_as_own, OutcomeKind.DELIBERATE),
        (_subscript_none, OutcomeKind.INCIDENTAL),
        (_multiply_none, OutcomeKind.INCIDENTAL),
        (_convert_text, OutcomeKind.INCIDENTAL),
        (_torch_shape_error, OutcomeKind.INCIDENTAL),
        (_assert_false, OutcomeKind.INCIDENTAL),
        (_memory, OutcomeKind.INCIDENTAL),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_deliberate_or_incidental_by_cause_not_by_class(raises, kind) -> None:
    from dpslice.check.outcome import call_target
    from dpslice.check.target import target_from_callable

    def target(*, dp_rank):
        return raises()

    assert call_target(target_from_callable(target), {"dp_rank": 0}).kind is kind


def test_an_installed_package_raising_on_purpose_is_deliberate_in_a_virtual_environment(
    tmp_path, monkeypatch
) -> None:
    """A venv's site-packages sits inside its platstdlib: an engine installed there is
    code under check, and its ``raise ValueError`` a refusal, not an operation."""
    import importlib
    import sysconfig

    from dpslice.check.outcome import call_target
    from dpslice.check.target import target_from_callable

    site_packages = tmp_path / "lib" / "site-packages"
    site_packages.mkdir(parents=True)
    (site_packages / "engine_for_dpslice.py").write_text(
        "def dp_slot_in(counts):\n    raise ValueError('counts of another gather')\n"
    )
    real = sysconfig.get_paths()
    paths = {**real, "platstdlib": str(tmp_path / "lib"), "purelib": str(site_packages)}
    monkeypatch.setattr(sysconfig, "get_paths", lambda: paths)
    monkeypatch.syspath_prepend(str(site_packages))
    engine = importlib.import_module("engine_for_dpslice")

    def target(*, global_num_tokens_cpu):
        return engine.dp_slot_in(global_num_tokens_cpu)

    outcome = call_target(target_from_callable(target), {"global_num_tokens_cpu": [1]})
    assert outcome.kind is OutcomeKind.DELIBERATE
