"""The installed sglang's own slice code under the check: one test per hazard it has.

Each hazard test runs ``dpslice check``'s property on the real engine function
(through :mod:`dpslice.engines.sglang`) and asserts the shrunk counterexample
the check reports: the layout, the rank and what the engine did.  The
expectations are those of sglang 0.5.12 and later (``get_dp_local_slice_cpu``
exists from 0.5.12, sglang PR 24550); docs/engines.md has the table for each
release.  Without sglang every test here skips (``DPSLICE_REQUIRE_ENGINE=sglang``
makes that an error).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import torch

from dpslice import DPLayout, Mode
from dpslice.check import CheckReport, Verdict, load_target, run_check
from dpslice.check.outcome import OutcomeKind
from dpslice.check.registry import Tier
from dpslice.errors import BadTargetError
from tests.engines.conftest import import_engine

SEED = 0
EXAMPLES = 200


@pytest.fixture(scope="module")
def sglang() -> ModuleType:
    return import_engine("sglang")


@pytest.fixture(scope="module")
def dp_attention(sglang: ModuleType) -> Any:
    return sglang._dp_attention


def _adapter(sglang: ModuleType, name: str) -> Callable[..., Any]:
    adapter = sglang.available().get(name)
    if adapter is None:
        pytest.skip(f"sglang {sglang.RELEASE} has no {name} adapter here")
    return adapter  # type: ignore[no-any-return]


def _check(adapter: Callable[..., Any], prop: str) -> CheckReport:
    return run_check(adapter, properties=[prop], seed=SEED, max_examples=EXAMPLES)


def _failure(report: CheckReport, prop: str) -> Any:
    result = report.result(prop)
    assert result.verdict is Verdict.FAIL, result
    assert result.tier is Tier.HAZARD
    assert result.counterexample is not None
    return result.counterexample


# -- hazards of get_dp_local_slice_cpu (sglang-capturer) ------------------------------


def test_speculative_decoding_offset_rank_1_reads_rank_0_padding(sglang: ModuleType) -> None:
    """Hazard 4 (docs/hazards.md), still in the newest release: in a decode-graph replay a rank owns
    ``bs * num_tokens_per_bs`` rows, but the engine starts rank r at ``r * bs``."""
    adapter = _adapter(sglang, "get_dp_local_slice_cpu")
    found = _failure(_check(adapter, "graph_replay_rows"), "graph_replay_rows")
    assert found.layout == DPLayout(
        (0, 1), Mode.GRAPH_REPLAY, graph_batch_size=1, num_tokens_per_bs=2
    )
    assert found.rank == 1
    assert found.arguments["cuda_graph_batch"] == 1
    assert found.outcome.kind is OutcomeKind.RETURNED
    assert found.outcome.slice == (1, 1)
    assert found.expected_slice == (2, 1)


def test_capture_with_none_counts_crashes_incidentally(sglang: ModuleType) -> None:
    """Hazard 2 of docs/hazards.md (review of sglang PR 24550): during capture the CPU
    counts are None and the engine fails with an incidental TypeError, not a deliberate
    refusal."""
    adapter = _adapter(sglang, "get_dp_local_slice_cpu")
    found = _failure(_check(adapter, "capture_phase_explicit"), "capture_phase_explicit")
    assert found.layout == DPLayout((1,), Mode.GRAPH_CAPTURE, graph_batch_size=1)
    assert found.rank == 0
    assert found.arguments["global_num_tokens_cpu"] is None
    assert found.outcome.kind is OutcomeKind.INCIDENTAL
    assert found.outcome.error == "TypeError"
    assert "dp_attention.py" in (found.outcome.location or "")


def test_prefill_graph_without_decode_extent_crashes_30712(sglang: ModuleType) -> None:
    """Hazard 3 of docs/hazards.md (sglang #30712): the prefill graph replays with
    ``cuda_graph_batch`` None, and ``rank * None`` raises TypeError even for rank 0."""
    adapter = _adapter(sglang, "get_dp_local_slice_cpu")
    found = _failure(_check(adapter, "prefill_graph_rows"), "prefill_graph_rows")
    assert found.layout == DPLayout((0,), Mode.PREFILL_GRAPH, graph_batch_size=1)
    assert found.rank == 0
    assert found.arguments["can_run_graph"] is True
    assert found.arguments["cuda_graph_batch"] is None
    assert found.outcome.kind is OutcomeKind.INCIDENTAL
    assert found.outcome.error == "TypeError"
    assert "NoneType" in (found.outcome.message or "")


def test_one_entry_list_is_this_ranks_own_entry_from_dp_slot_in_on(
    sglang: ModuleType, dp_attention: Any
) -> None:
    """Hazard 7 of docs/hazards.md: with ``dp_slot_in`` (0.5.21 on) a skipped gather's
    one-entry list is slot 0 on every rank; before it, ``counts[rank]`` raised IndexError
    on rank > 0."""
    adapter = _adapter(sglang, "get_dp_local_slice_cpu")
    call = {"global_num_tokens_cpu": [3], "dp_rank": 1, "can_run_graph": False}
    if hasattr(dp_attention, "dp_slot_in"):
        assert adapter(**call, dp_size=2, cuda_graph_batch=None) == (0, 3)
    else:
        with pytest.raises(IndexError):
            adapter(**call, cuda_graph_batch=None)


# -- get_dp_local_info (sglang-gather) -------------------------------------------------


def test_get_dp_local_info_holds_every_hazard_property_under_sglang_gather(
    sglang: ModuleType,
) -> None:
    """Under the call site it serves (whole blocks, the graph's block counts in replay,
    bounds read on the device) the engine's GPU-count slice has no hazard."""
    adapter = _adapter(sglang, "get_dp_local_info")
    assert adapter.__dpslice_contract__ == "sglang-gather"
    report = run_check(adapter, seed=SEED, max_examples=EXAMPLES)
    assert report.contract.name == "sglang-gather"
    hazards = [result for result in report.results if result.tier is Tier.HAZARD]
    assert hazards
    broken = [(r.name, r.verdict, r.note) for r in hazards if not r.holds]
    assert broken == []
    assert report.result("graph_replay_rows").verdict is Verdict.PASS


def test_get_dp_local_info_returns_0_dim_tensors(sglang: ModuleType) -> None:
    """Its bounds are 0-dim tensors on the count tensor's device (sglang #24514's cause)."""
    adapter = _adapter(sglang, "get_dp_local_info")
    start, length = adapter(global_num_tokens_gpu=torch.tensor([3, 2, 4]), dp_rank=2, dp_size=3)
    assert isinstance(start, torch.Tensor)
    assert start.dim() == 0
    assert isinstance(length, torch.Tensor)
    assert (int(start), int(length)) == (5, 4)


# -- the routed-experts capturer -------------------------------------------------------


def test_capturer_slices_what_get_dp_local_slice_cpu_returns(sglang: ModuleType) -> None:
    """From 0.5.12 the capturer slices its device buffer with get_dp_local_slice_cpu's
    bounds; the adapter reads them off the buffer it was handed."""
    capturer = _adapter(sglang, "routed_experts_capturer_slice")
    cpu_slice = _adapter(sglang, "get_dp_local_slice_cpu")
    for call in (
        {"global_num_tokens_cpu": [3, 2], "dp_rank": 1, "can_run_graph": False},
        {"global_num_tokens_cpu": [3, 2], "dp_rank": 1, "can_run_graph": True},
        {"global_num_tokens_cpu": [0, 4, 1], "dp_rank": 2, "can_run_graph": False},
    ):
        kwargs = {**call, "dp_size": len(call["global_num_tokens_cpu"]), "cuda_graph_batch": 4}
        assert capturer(**kwargs) == cpu_slice(**kwargs)


def test_capturer_has_the_speculative_decoding_offset(sglang: ModuleType) -> None:
    capturer = _adapter(sglang, "routed_experts_capturer_slice")
    found = _failure(_check(capturer, "graph_replay_rows"), "graph_replay_rows")
    assert found.layout == DPLayout(
        (0, 1), Mode.GRAPH_REPLAY, graph_batch_size=1, num_tokens_per_bs=2
    )
    assert found.rank == 1
    assert found.outcome.slice == (1, 1)


# -- the adapters themselves ------------------------------------------------------------


def _lookups(sglang: ModuleType, dp_attention: Any) -> dict[str, object]:
    names = sglang._slot_lookups(0, 1)
    return {name: getattr(dp_attention, name) for name in names}


def test_lookups_are_restored_after_a_call(sglang: ModuleType, dp_attention: Any) -> None:
    before = _lookups(sglang, dp_attention)
    seen: dict[str, object] = {}
    original = dp_attention.get_dp_local_slice_cpu

    def spy(*args: object) -> object:
        seen.update({name: getattr(dp_attention, name)() for name in before})
        return original(*args)

    adapter = _adapter(sglang, "get_dp_local_slice_cpu")
    kwargs = {"global_num_tokens_cpu": [3, 2, 4], "dp_rank": 2, "dp_size": 3}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dp_attention, "get_dp_local_slice_cpu", spy)
        assert adapter(**kwargs, can_run_graph=False, cuda_graph_batch=None) == (5, 4)
    # Inside the call the lookups answered the drawn rank (and width, where read).
    assert seen.get("dp_gather_slot", seen.get("get_attention_dp_rank")) == 2
    if "dp_gather_width" in seen:
        assert seen["dp_gather_width"] == 3
    assert _lookups(sglang, dp_attention) == before


def test_lookups_are_restored_after_the_engine_raises(
    sglang: ModuleType, dp_attention: Any
) -> None:
    before = _lookups(sglang, dp_attention)
    adapter = _adapter(sglang, "get_dp_local_slice_cpu")
    with pytest.raises(TypeError):
        adapter(
            global_num_tokens_cpu=None,
            dp_rank=0,
            dp_size=1,
            can_run_graph=True,
            cuda_graph_batch=1,
        )
    assert _lookups(sglang, dp_attention) == before


def test_patched_refuses_a_name_the_module_lacks_and_restores_the_rest(
    sglang: ModuleType, dp_attention: Any
) -> None:
    before = _lookups(sglang, dp_attention)
    replacement = {name: (lambda: 7) for name in before}
    with (
        pytest.raises(AttributeError, match="no not_a_lookup"),
        sglang.patched(dp_attention, **replacement, not_a_lookup=lambda: 0),
    ):
        pass  # pragma: no cover - patching fails before the block runs
    assert _lookups(sglang, dp_attention) == before
    assert not hasattr(dp_attention, "not_a_lookup")


def test_adapters_name_their_contract_and_the_engine_source(sglang: ModuleType) -> None:
    for name, adapter in sglang.available().items():
        target = load_target(f"dpslice.engines.sglang:{name}")
        assert target.contract.name == adapter.__dpslice_contract__
        # Failures are located in sglang's own file, not in the adapter.
        assert target.source_file is not None
        assert "/sglang/" in target.source_file
        assert target.accepts <= {
            "global_num_tokens_cpu",
            "global_num_tokens_gpu",
            "dp_rank",
            "dp_size",
            "can_run_graph",
            "cuda_graph_batch",
        }


def test_a_function_the_release_lacks_is_named_with_the_release(
    sglang: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(vars(sglang), "get_dp_local_slice_cpu", raising=False)
    with pytest.raises(
        BadTargetError, match=r"has no get_dp_local_slice_cpu \(added by sglang PR 24550"
    ):
        load_target("dpslice.engines.sglang:get_dp_local_slice_cpu")


# -- the engine's code as a project's pytest tests ----------------------------------------


def test_the_pytest_route_fails_exactly_the_engines_hazards(
    sglang: ModuleType, tmp_path: Any
) -> None:
    """``pytest --dpslice-target`` on the installed slice: ``dpslice check``'s verdicts."""
    import subprocess
    import sys
    import xml.etree.ElementTree as ElementTree

    _adapter(sglang, "get_dp_local_slice_cpu")
    report = tmp_path / "sglang.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "--dpslice-target", "dpslice.engines.sglang:get_dp_local_slice_cpu",
         "--dpslice-seed", str(SEED), "--dpslice-max-examples", str(EXAMPLES),
         "--junitxml", str(report)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    outcomes = {
        case.attrib["name"]: [child.tag for child in case]
        for case in ElementTree.parse(report).getroot().iter("testcase")
    }
    failed = sorted(name for name, tags in outcomes.items() if "failure" in tags)
    assert failed == [
        "capture_phase_explicit",
        "graph_replay_rows",
        "large_counts_exact",
        "prefill_graph_rows",
        "ranks_disjoint_in_bounds",
    ]
    assert "sglang/srt/layers/dp_attention.py" in result.stdout  # the engine's own line
