"""The property battery: the reference holds, each property catches its bug, N/A is fair."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from hypothesis import strategies as st

from dpslice import DPLayout, Mode, dp_local_slice
from dpslice.check import Property, Verdict, register, run_check
from dpslice.check.battery import RANKS_DISJOINT_IN_BOUNDS, SUM_LEN_TILES_BUFFER
from dpslice.check.calls import LayoutCall
from dpslice.check.registry import RelatedCall, registered, select
from dpslice.check.rows import render_rows
from dpslice.check.target import target_from_callable
from dpslice.errors import CheckBrokeError, UnknownPropertyError

BUILT_IN = (
    "sum_len_rows",
    "max_len_rows",
    "graph_replay_rows",
    "prefill_graph_rows",
    "dp_chunk_rows",
    "skipped_gather_rows",
    "ranks_disjoint_in_bounds",
    "sum_len_tiles_buffer",
    "large_counts_exact",
    "capture_phase_explicit",
    "inputs_unchanged",
    "invalid_inputs_refused",
    "sync_free",
    "cuda_view",
)


def test_the_built_in_properties_run_in_order() -> None:
    assert tuple(prop.name for prop in registered())[: len(BUILT_IN)] == BUILT_IN


def test_the_reference_holds_every_property() -> None:
    report = run_check(max_examples=40, seed=0)
    verdicts = {result.name: result.verdict for result in report.results}
    # On the CPU, the CUDA view property does not apply; sglang never chunks.
    not_applicable = {"cuda_view", "dp_chunk_rows"}
    assert verdicts == {
        **dict.fromkeys(BUILT_IN, Verdict.PASS),
        **dict.fromkeys(not_applicable, Verdict.NOT_APPLICABLE),
    }
    assert all(r.examples > 0 for r in report.results if r.name not in not_applicable)
    assert report.passed


#: What the faithful pre-#24550 tensor path fails on the CPU as a capturer, each a
#: hazard of docs/hazards.md.
TENSOR_PATH_FAILS = {
    "skipped_gather_rows": "IndexError",  # a one-entry count tensor indexed by rank
    "prefill_graph_rows": "TypeError",  # rank * None in a prefill graph (sglang #30712)
    "sync_free": "synchronised the host",  # 0-dim tensor bounds (sglang #24514)
}


def test_the_tensor_path_fails_exactly_its_documented_hazards() -> None:
    report = run_check("dpslice.specimens.tensor_path:tensor_path_slice", max_examples=60, seed=1)
    assert set(report.failed) == set(TENSOR_PATH_FAILS)
    for name, fragment in TENSOR_PATH_FAILS.items():
        counterexample = report.result(name).counterexample
        assert counterexample is not None
        assert fragment in f"{counterexample.outcome.describe()} / {counterexample.why}", name
    # No validation of dp_rank or graph_extent: inputs no engine produces, so a WARN.
    assert report.result("invalid_inputs_refused").verdict is Verdict.WARN
    # The dummy batch's GPU counts locate the rank exactly during capture.
    assert report.result("capture_phase_explicit").verdict is Verdict.PASS
    assert report.result("cuda_view").verdict is Verdict.NOT_APPLICABLE


# -- each property catches the bug it exists for -------------------------------------------


def prefix_slice(
    counts: Sequence[int], rank: int, can_run_graph: bool, graph_extent: int | None
) -> tuple[int, int]:
    """A correct slice for valid input, without validation: the base of the buggy targets."""
    slot = 0 if len(counts) == 1 else rank
    start = (
        slot * graph_extent if can_run_graph and graph_extent is not None else sum(counts[:slot])
    )
    return start, counts[slot]


def drops_last_row(
    *, global_num_tokens_cpu: list[int], dp_rank: int, can_run_graph: bool, graph_extent: int
) -> tuple[int, int]:
    start, length = prefix_slice(global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent)
    return start, max(length - 1, 0)


def starts_one_row_early(
    *, global_num_tokens_cpu: list[int], dp_rank: int, can_run_graph: bool, graph_extent: int
) -> tuple[int, int]:
    start, length = prefix_slice(global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent)
    return max(start - 1, 0), length


def empty_slices_at_zero(
    *, global_num_tokens_cpu: list[int], dp_rank: int, can_run_graph: bool, graph_extent: int
) -> tuple[int, int]:
    # Every empty slice selects no rows, so only the tiling property sees the jump.
    start, length = prefix_slice(global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent)
    return (0, 0) if length == 0 else (start, length)


def float32_prefix_sum(
    *, global_num_tokens_cpu: list[int], dp_rank: int, can_run_graph: bool, graph_extent: int
) -> tuple[int, int]:
    start, length = prefix_slice(global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent)
    return int(torch.tensor(float(start), dtype=torch.float32).item()), length


def bool_length(
    *, global_num_tokens_cpu: list[int], dp_rank: int, can_run_graph: bool, graph_extent: int
) -> tuple[int, bool]:
    start, length = prefix_slice(global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent)
    return start, bool(length)


CAUGHT = [
    pytest.param(drops_last_row, "max_len_rows", "misses 1 of rank", id="max-len-drops-a-row"),
    pytest.param(
        starts_one_row_early, "ranks_disjoint_in_bounds", "overlaps rank", id="overlapping-ranks"
    ),
    pytest.param(starts_one_row_early, "sum_len_rows", "does not own", id="reads-prior-rank"),
    pytest.param(empty_slices_at_zero, "sum_len_tiles_buffer", "starts at 0", id="gap-in-tiling"),
    pytest.param(float32_prefix_sum, "large_counts_exact", "the start is", id="float32-start"),
    pytest.param(bool_length, "graph_replay_rows", "not a (start, length) slice", id="bool-length"),
]


@pytest.mark.parametrize(("target", "name", "why"), CAUGHT)
def test_each_property_catches_its_bug(target: Callable[..., object], name: str, why: str) -> None:
    result = run_check(target, max_examples=100, seed=0, properties=[name]).result(name)
    assert result.verdict is Verdict.FAIL
    assert result.counterexample is not None
    assert why in result.counterexample.why


def test_properties_that_empty_slices_fool_still_pass_the_tiling_bug() -> None:
    """The tiling bug is invisible to the rows properties: that is why tiling exists."""
    report = run_check(empty_slices_at_zero, max_examples=100, seed=0, properties=["sum_len_rows"])
    assert report.passed


# -- two ranks' slices clash: the rank whose own slice is wrong is blamed -------------------


def rank_zero_reads_the_last_count(
    *, global_num_tokens_cpu: list[int], dp_rank: int
) -> tuple[int, int]:
    """Rank 0 reads its count at ``dp_rank - 1``, which wraps to the last rank's."""
    counts = global_num_tokens_cpu
    return sum(counts[:dp_rank]), counts[dp_rank - 1 if dp_rank == 0 else dp_rank]


def whole_buffer(*, global_num_tokens_cpu: list[int], dp_rank: int) -> tuple[int, int]:
    return 0, sum(global_num_tokens_cpu)


CLASHES = ["ranks_disjoint_in_bounds", "sum_len_tiles_buffer"]


@pytest.mark.parametrize("name", CLASHES)
def test_a_clash_blames_the_rank_whose_slice_is_not_the_oracles_and_shows_the_other(
    name: str,
) -> None:
    report = run_check(rank_zero_reads_the_last_count, max_examples=100, seed=0, properties=[name])
    counterexample = report.result(name).counterexample
    assert counterexample is not None
    assert counterexample.layout == DPLayout((0, 1))
    # Rank 0's (0, 1) is wrong; rank 1's (0, 1) is the oracle's own.
    assert (counterexample.rank, counterexample.outcome.slice) == (0, (0, 1))
    assert counterexample.expected_slice == (0, 0)
    assert counterexample.related == (
        RelatedCall(
            rank=1,
            call="rank_zero_reads_the_last_count(global_num_tokens_cpu=[0, 1], dp_rank=1)",
            outcome="returned (0, 1)",
        ),
    )
    assert counterexample.why.endswith("rank 1's slice (0, 1), which is the oracle's")


@pytest.mark.parametrize("name", CLASHES)
def test_when_neither_clashing_slice_is_the_oracles_the_lower_rank_is_blamed(name: str) -> None:
    (prop,) = select([name])
    counterexample = prop.check(target_from_callable(whole_buffer), DPLayout((1, 1)))
    assert counterexample is not None
    assert (counterexample.rank, counterexample.outcome.slice) == (0, (0, 2))
    assert [(other.rank, other.outcome) for other in counterexample.related] == [
        (1, "returned (0, 2)")
    ]


@pytest.mark.parametrize("prop", [RANKS_DISJOINT_IN_BOUNDS, SUM_LEN_TILES_BUFFER])
def test_two_oracle_slices_that_clash_break_the_check_not_the_target(
    prop: Property[DPLayout], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LayoutCall, "expected_slice", property(lambda called: called.outcome.slice))
    with pytest.raises(CheckBrokeError, match="the oracle is wrong"):
        prop.check(target_from_callable(whole_buffer), DPLayout((1, 1)))


def test_the_speculative_decoding_offset_shrinks_to_a_readable_counterexample() -> None:
    report = run_check(
        "dpslice.specimens.upstream:get_dp_local_slice_cpu_as_merged",
        max_examples=200,
        seed=1,
        properties=["graph_replay_rows"],
    )
    counterexample = report.result("graph_replay_rows").counterexample
    assert counterexample is not None
    layout = counterexample.layout
    assert layout.mode is Mode.GRAPH_REPLAY
    assert (layout.graph_batch_size, layout.num_tokens_per_bs) == (1, 2)
    assert counterexample.rank == layout.dp_size - 1 > 0
    assert counterexample.arguments["cuda_graph_batch"] == 1
    assert counterexample.outcome.slice == (counterexample.rank, 1)
    assert counterexample.expected_slice == (2 * counterexample.rank, 1)
    assert "does not own" in counterexample.why


# -- N/A: a property is not judged on inputs the target never reads -----------------------


def from_gpu_counts(
    *, global_num_tokens_gpu: torch.Tensor, dp_rank: int, can_run_graph: bool, graph_extent: int
) -> tuple[int, int]:
    counts = global_num_tokens_gpu.tolist()
    return prefix_slice(counts, dp_rank, can_run_graph, graph_extent)


def from_graph_flags(*, can_run_graph: bool, num_tokens_per_bs: int) -> tuple[int, int]:
    return 0, 0


NOT_APPLICABLE = [
    pytest.param(
        from_graph_flags,
        "capture_phase_explicit",
        "global_num_tokens_cpu or global_num_tokens_gpu",
        id="capture",
    ),
    pytest.param(
        from_gpu_counts,
        "dp_chunk_rows",
        "the sglang-capturer contract never reaches DP_CHUNK",
        id="state-never-reached",
    ),
    pytest.param(
        from_graph_flags, "invalid_inputs_refused", "takes no parameters", id="invalid-inputs"
    ),
]


@pytest.mark.parametrize(("target", "name", "reason"), NOT_APPLICABLE)
def test_a_property_on_inputs_the_target_does_not_read_is_not_applicable(
    target: Callable[..., object], name: str, reason: str
) -> None:
    report = run_check(target, max_examples=10, seed=0, properties=[name])
    result = report.result(name)
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert result.note is not None
    assert reason in result.note
    assert result.examples == 0
    assert report.passed, "N/A counts as holding"


def test_a_gpu_counts_target_is_judged_on_the_rows() -> None:
    report = run_check(
        from_gpu_counts, max_examples=50, seed=0, properties=["sum_len_rows", "graph_replay_rows"]
    )
    assert report.passed


def never_told_dp_size(
    *,
    global_num_tokens_cpu: list[int] | None,
    dp_rank: int,
    can_run_graph: bool,
    graph_extent: int | None,
) -> tuple[int, int]:
    """Validates everything it can see; a wrong-length list or DP size is invisible to it."""
    counts = global_num_tokens_cpu
    width = len(counts) if isinstance(counts, list) else 1
    rank_bound = dp_rank + 1 if type(dp_rank) is int and dp_rank >= 0 else 1
    return dp_local_slice(
        counts,
        dp_rank,
        dp_size=width if width > 1 else rank_bound,
        can_run_graph=can_run_graph,
        graph_extent=graph_extent,
    )


def test_invalid_calls_are_only_judged_on_defects_the_target_can_see() -> None:
    report = run_check(
        never_told_dp_size, max_examples=200, seed=0, properties=["invalid_inputs_refused"]
    )
    result = report.result("invalid_inputs_refused")
    assert result.verdict is Verdict.PASS, result.counterexamples


# -- the registry --------------------------------------------------------------------------


def never_fails(target: object, example: object) -> None:
    return None


def prop(name: str = "extra_property", statement: str = "Holds.", **extra: object) -> Property[int]:
    return Property(
        name=name,
        statement=statement,
        draws="st.integers()",
        strategy=lambda _target: st.integers(),
        check=never_fails,
        **extra,  # type: ignore[arg-type]
    )


BAD_PROPERTIES = [
    pytest.param({"name": "Not Snake"}, "must be snake_case", id="name"),
    pytest.param({"statement": "two\nlines"}, "must be one line", id="statement"),
    pytest.param({"exercises": frozenset({"forward_batch"})}, "does not pass", id="exercises"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_PROPERTIES)
def test_a_malformed_property_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prop(**fields)  # type: ignore[arg-type]


def test_a_name_can_be_registered_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(prop(name="sum_len_rows"))


def test_selecting_an_unknown_property_names_the_known_ones() -> None:
    with pytest.raises(UnknownPropertyError, match="no property named 'nope'; choose from sum_len"):
        select(["nope"])


def test_selecting_a_property_twice_runs_it_once() -> None:
    assert [p.name for p in select(["max_len_rows", "sum_len_rows", "max_len_rows"])] == [
        "max_len_rows",
        "sum_len_rows",
    ]


def test_an_unregistered_property_can_be_run_directly() -> None:
    report = run_check(max_examples=5, seed=0, properties=[prop()])
    assert report.result("extra_property").verdict is Verdict.PASS


def test_requires_makes_a_property_not_applicable() -> None:
    needs_cuda = prop(requires=lambda target: "needs --device cuda")
    result = run_check(max_examples=5, seed=0, properties=[needs_cuda]).results[0]
    assert (result.verdict, result.note) == (Verdict.NOT_APPLICABLE, "needs --device cuda")


# -- rendering rows ------------------------------------------------------------------------


def test_rows_render_as_runs() -> None:
    layout = DPLayout((3, 1), Mode.MAX_LEN)
    assert render_rows(layout.gathered(0)) == "r0[0..2] r1[0] r1[pad]*2"
    assert render_rows(layout.gathered(0)[3:4]) == "r1[0]"
    assert render_rows(layout.gathered(0)[:0]) == "(none)"


def test_long_row_runs_are_cut_short() -> None:
    layout = DPLayout((1,) * 12)
    assert render_rows(layout.gathered(0), max_runs=3) == "r0[0] r1[0] r2[0] ... (+9 more runs)"


def test_a_layout_target_gets_its_rows_compared_not_its_formula() -> None:
    """Two slices covering the same rows are equally right: an empty slice anywhere in bounds."""

    def empty_anywhere(*, global_num_tokens_cpu: list[int], dp_rank: int) -> tuple[int, int]:
        counts = global_num_tokens_cpu
        return (0, 0) if counts[dp_rank] == 0 else (sum(counts[:dp_rank]), counts[dp_rank])

    target = target_from_callable(empty_anywhere)
    assert target.accepts == {"global_num_tokens_cpu", "dp_rank"}
    assert run_check(target, max_examples=50, seed=0, properties=["sum_len_rows"]).passed


def test_the_worked_example_in_the_docs_passes_every_property() -> None:
    docs = Path(__file__).parents[1] / "docs" / "check.md"
    block = re.search(r"```python\n(def my_slice.*?)```", docs.read_text(), re.DOTALL)
    assert block is not None, "docs/check.md lost its worked example"
    namespace: dict[str, object] = {}
    exec(block.group(1), namespace)
    report = run_check(namespace["my_slice"], max_examples=30, seed=0)  # type: ignore[arg-type]
    assert report.passed, [result.counterexample for result in report.results]
