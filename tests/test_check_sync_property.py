"""``sync_free``: the call and the slicing with its bounds are watched, and a sync is named."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from dpslice import DPLayout, dp_local_slice
from dpslice.check import Verdict, load_target, run_check
from dpslice.check.registry import select
from tests.torch_releases import SLICE_SYNC

SYNC_FREE = ["sync_free"]
TENSOR_PATH = "dpslice.specimens.tensor_path:tensor_path_slice"
CPU_ONLY = "dpslice.sync CPU-only mode"


def test_the_reference_is_sync_free_and_the_row_says_which_mode_ran() -> None:
    result = run_check(max_examples=50, seed=0, properties=SYNC_FREE).result("sync_free")
    assert result.verdict is Verdict.PASS
    assert result.examples == 50
    assert result.note is not None
    assert result.note.startswith(CPU_ONLY)


def test_the_tensor_paths_bounds_sync_where_the_buffer_is_sliced_hazard_24514() -> None:
    """It computes 0-dim tensor bounds without a sync; the sync comes when they slice."""
    result = run_check(TENSOR_PATH, max_examples=50, seed=0, properties=SYNC_FREE).results[0]
    assert result.verdict is Verdict.FAIL
    counterexample = result.counterexample
    assert counterexample is not None
    assert counterexample.layout == DPLayout((0,))  # shrunk: any eager layout syncs
    assert counterexample.outcome.slice == (0, 0)
    assert "(dpslice.sync, CPU-only mode)" in counterexample.expected
    why = counterexample.why
    assert why.startswith(
        "slicing the gathered buffer with the bounds it returned (start a 0-dim cpu tensor, "
        f"length a 0-dim cpu tensor) synchronised the host: {SLICE_SYNC} (x2) at "
        "dpslice/check/calls.py:"
    )
    assert why.endswith(": return buffer[start : start + length]")
    assert "the call synchronised" not in why


def reads_its_count(
    *, global_num_tokens_gpu: torch.Tensor, dp_rank: int, dp_size: int
) -> tuple[int, int]:
    """Python-int bounds, read off the count tensor: the call itself syncs."""
    counts = global_num_tokens_gpu.tolist()
    return dp_local_slice(counts, dp_rank, dp_size=dp_size)


def test_a_sync_inside_the_target_names_its_own_line() -> None:
    result = run_check(reads_its_count, max_examples=50, seed=0, properties=SYNC_FREE).results[0]
    assert result.verdict is Verdict.FAIL
    counterexample = result.counterexample
    assert counterexample is not None
    lines, first = inspect.getsourcelines(reads_its_count)
    lineno = first + next(i for i, line in enumerate(lines) if ".tolist()" in line)
    assert counterexample.why == (
        f"the call synchronised the host: Tensor.tolist at tests/{Path(__file__).name}:{lineno}: "
        "counts = global_num_tokens_gpu.tolist()"
    )


def test_a_call_that_raises_is_left_to_the_other_properties() -> None:
    """The tensor path crashes on a skipped gather (hazard 7, docs/hazards.md).

    Not this property's to judge."""
    prop = select(SYNC_FREE)[0]
    target = load_target(TENSOR_PATH)
    assert prop.check(target, (DPLayout((2, 3), gather_skipped=True), 1)) is None
    assert prop.check(target, (DPLayout((2, 3)), 1)) is not None
