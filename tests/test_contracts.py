"""dpslice.contracts: the presets, a contract's own checks, and naming contracts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dpslice import DPLayout, Mode, Owns
from dpslice.check import Verdict, run_check
from dpslice.contracts import (
    DEFAULT_CONTRACT,
    MAX_CONTRACT_ROWS,
    PRESETS,
    SGLANG_CAPTURER,
    SGLANG_GATHER,
    BoundsUse,
    Contract,
    CountsForm,
    resolve_contract,
)
from dpslice.errors import InvalidContractError
from tests.targets.engines import PACKED_ONLY


def test_the_presets_and_the_default() -> None:
    assert list(PRESETS) == ["sglang-capturer", "sglang-gather", "vllm-dp", "vllm-chunked"]
    assert DEFAULT_CONTRACT is SGLANG_CAPTURER


@pytest.mark.parametrize(
    ("name", "modes", "owns", "counts_form", "bounds", "skipped"),
    [
        pytest.param(
            "sglang-capturer",
            {Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY, Mode.PREFILL_GRAPH, Mode.GRAPH_CAPTURE},
            Owns.REAL_ROWS,
            CountsForm.LIST,
            BoundsUse.HOST,
            True,
            id="capturer",
        ),
        pytest.param(
            "sglang-gather",
            {Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY, Mode.PREFILL_GRAPH, Mode.GRAPH_CAPTURE},
            Owns.PADDED_BLOCK,
            CountsForm.LIST,
            BoundsUse.DEVICE,
            False,
            id="gather",
        ),
        pytest.param(
            "vllm-dp",
            {Mode.SUM_LEN, Mode.MAX_LEN},
            Owns.PADDED_BLOCK,
            CountsForm.INT32_CPU_TENSOR,
            BoundsUse.HOST,
            False,
            id="vllm-dp",
        ),
        pytest.param(
            "vllm-chunked",
            {Mode.DP_CHUNK},
            Owns.PADDED_BLOCK,
            CountsForm.INT32_CPU_TENSOR,
            BoundsUse.HOST,
            False,
            id="vllm-chunked",
        ),
    ],
)
def test_each_preset_says_what_its_call_site_reaches(
    name: str,
    modes: set[Mode],
    owns: Owns,
    counts_form: CountsForm,
    bounds: BoundsUse,
    skipped: bool,
) -> None:
    contract = PRESETS[name]
    assert (contract.modes, contract.owns, contract.counts_form) == (modes, owns, counts_form)
    assert (contract.bounds_used_on, contract.skipped_gather) == (bounds, skipped)
    assert Mode.GRAPH_CAPTURE not in contract.counted_modes


def test_vllm_never_gathers_an_empty_rank() -> None:
    assert PRESETS["vllm-dp"].min_count == PRESETS["vllm-chunked"].min_count == 1


def test_the_gather_contract_hands_every_rank_its_block_in_replay() -> None:
    """Replay fills the graph's static count tensor with bs * num_tokens_per_bs a rank."""
    replay = DPLayout((3, 0), Mode.GRAPH_REPLAY, graph_batch_size=2, num_tokens_per_bs=2)
    assert SGLANG_GATHER.device_counts(replay, 1) == [4, 4]
    assert SGLANG_CAPTURER.device_counts(replay, 1) == [3, 0]
    eager = DPLayout((3, 0))
    assert SGLANG_GATHER.device_counts(eager, 1) == [3, 0]


def test_the_owned_rows_differ_in_a_decode_replay_only() -> None:
    replay = DPLayout((3, 1), Mode.GRAPH_REPLAY, graph_batch_size=4)
    assert (SGLANG_CAPTURER.span(replay, 1).num_rows, SGLANG_GATHER.span(replay, 1).num_rows) == (
        1,
        4,
    )
    max_len = DPLayout((3, 1), Mode.MAX_LEN)
    assert SGLANG_CAPTURER.span(max_len, 1) == SGLANG_GATHER.span(max_len, 1)


_VALID = {"name": "mine", "summary": "one line", "modes": frozenset({Mode.SUM_LEN})}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"name": "My Engine"}, "lower-case words", id="name"),
        pytest.param({"summary": "two\nlines"}, "summary must be one line", id="summary"),
        pytest.param({"modes": {Mode.SUM_LEN}}, "non-empty frozenset", id="modes-a-set"),
        pytest.param({"modes": frozenset()}, "non-empty frozenset", id="modes-empty"),
        pytest.param({"modes": frozenset({"sum_len"})}, "every mode", id="modes-strings"),
        pytest.param({"owns": "real_rows"}, "owns must be", id="owns"),
        pytest.param({"counts_form": "list"}, "counts_form must be", id="counts-form"),
        pytest.param({"gpu_counts": None}, "gpu_counts must be", id="gpu-counts"),
        pytest.param({"bounds_used_on": "host"}, "bounds_used_on must be", id="bounds"),
        pytest.param({"skipped_gather": 1}, "skipped_gather must be a bool", id="skipped"),
        pytest.param(
            {"modes": frozenset({Mode.GRAPH_CAPTURE}), "skipped_gather": True},
            "a skipped gather needs a mode with counts",
            id="skipped-capture-only",
        ),
        pytest.param({"min_count": -1}, "min_count must be an int from 0 ", id="min-count"),
        pytest.param({"max_num_tokens_per_bs": 0}, "max_num_tokens_per_bs", id="tokens-per-bs"),
        pytest.param({"attn_tp_sizes": [1]}, "attn_tp_sizes", id="tp-sizes-list"),
        pytest.param({"attn_tp_sizes": (0,)}, "attn_tp_sizes", id="tp-size-zero"),
    ],
)
def test_a_malformed_contract_says_what_to_fix(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidContractError, match=message):
        Contract(**{**_VALID, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"min_count": 10**12}, "min_count must be an int from 0 to 1024", id="min-count"
        ),
        pytest.param(
            {"attn_tp_sizes": (1, 10**9)},
            "attn_tp_sizes must be a non-empty tuple of ints from 1 to 1024",
            id="tp-size",
        ),
        pytest.param(
            {"max_num_tokens_per_bs": 10**9},
            "max_num_tokens_per_bs must be an int from 1 to 1024",
            id="tokens-per-bs",
        ),
    ],
)
def test_a_contract_the_battery_could_not_draw_is_refused_with_its_bound(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidContractError, match=message) as refused:
        Contract(**{**_VALID, **change})  # type: ignore[arg-type]
    assert "the check builds every rank's rows" in str(refused.value)


def test_a_contract_at_every_bound_runs_the_whole_battery() -> None:
    """The bounds are what the battery can draw and build: no property ERRORs there."""
    widest = Contract(
        name="widest",
        summary="every state, every bound at its largest",
        modes=frozenset(Mode),
        skipped_gather=True,
        min_count=MAX_CONTRACT_ROWS,
        attn_tp_sizes=(MAX_CONTRACT_ROWS,),
        max_num_tokens_per_bs=MAX_CONTRACT_ROWS,
    )
    report = run_check(contract=widest, max_examples=5, seed=0)
    errors = [
        (result.name, result.note) for result in report.results if result.verdict is Verdict.ERROR
    ]
    assert errors == []


def test_a_capture_only_contract_has_no_invalid_call_to_refuse() -> None:
    capture = Contract(name="capture-only", summary="x", modes=frozenset({Mode.GRAPH_CAPTURE}))
    (refused,) = run_check(
        contract=capture, max_examples=5, seed=0, properties=["invalid_inputs_refused"]
    ).results
    assert refused.verdict is Verdict.NOT_APPLICABLE, refused.note
    assert refused.note == (
        "the capture-only contract reaches only GRAPH_CAPTURE, whose calls have no CPU "
        "counts to put a defect in"
    )


def test_a_contract_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SGLANG_CAPTURER.owns = Owns.PADDED_BLOCK  # type: ignore[misc]


class TestResolve:
    def test_a_preset_by_name(self) -> None:
        assert resolve_contract("vllm-dp") is PRESETS["vllm-dp"]

    def test_a_contract_of_ones_own_as_module_and_name(self) -> None:
        assert resolve_contract("tests.targets.engines:PACKED_ONLY") is PACKED_ONLY

    def test_a_contract_in_hand(self) -> None:
        assert resolve_contract(PACKED_ONLY) is PACKED_ONLY
        assert resolve_contract(dataclasses.replace(SGLANG_GATHER)) == SGLANG_GATHER

    def test_a_contract_of_ones_own_may_not_take_a_presets_name(self) -> None:
        posing = dataclasses.replace(SGLANG_CAPTURER, min_count=1)
        with pytest.raises(InvalidContractError, match="a contract of your own is named "):
            resolve_contract(posing)

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            pytest.param(
                "sglang", "no contract named 'sglang'; choose from sglang-capturer", id="unknown"
            ),
            pytest.param(
                "no_such_module_here:X", "cannot import 'no_such_module_here'", id="module"
            ),
            pytest.param(
                "tests.targets.engines:MISSING", "is missing, not a dpslice", id="missing"
            ),
            pytest.param(
                "tests.targets.engines:NOT_A_CONTRACT", "is a str, not a dpslice", id="not-one"
            ),
        ],
    )
    def test_what_names_no_contract(self, spec: str, message: str) -> None:
        with pytest.raises(InvalidContractError, match=message):
            resolve_contract(spec)

    @pytest.mark.parametrize(
        ("body", "raised"),
        [
            ("raise RuntimeError('boom')", "RuntimeError: boom"),
            ("import no_such_module_here", "ModuleNotFoundError: No module named"),
            ("raise SystemExit(3)", "SystemExit: 3"),
        ],
        ids=["raises", "imports-what-is-missing", "exits"],
    )
    def test_a_contract_module_that_fails_to_import_is_the_contracts_fault(
        self, body: str, raised: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "broken_contract.py").write_text(body + "\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        with pytest.raises(InvalidContractError) as refused:
            resolve_contract("broken_contract:MY")
        assert str(refused.value).startswith(
            f"contract broken_contract:MY: importing 'broken_contract' raised {raised}"
        )
