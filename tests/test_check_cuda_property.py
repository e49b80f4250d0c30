"""``cuda_view``: not applicable off CUDA; its comparison of views, run on CPU tensors.

The comparison uses the target's device, so it is checked here on the CPU by
calling the property's check directly (which skips its applicability); the
GPU run of it is ``tests/cuda/test_check_cuda.py``.
"""

from __future__ import annotations

import pytest

from dpslice import DPLayout, Mode, dp_local_slice
from dpslice.check import Verdict, load_target, run_check
from dpslice.check.registry import select
from dpslice.check.target import target_from_callable

CUDA_VIEW = select(["cuda_view"])[0]


def test_it_is_not_applicable_without_device_cuda() -> None:
    result = run_check(max_examples=5, seed=0, properties=[CUDA_VIEW]).results[0]
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert result.note == "it compares CUDA views: run with --device cuda (this run is on cpu)"


def shifted(*, global_num_tokens_cpu: list[int], dp_rank: int, dp_size: int) -> tuple[int, int]:
    start, length = dp_local_slice(global_num_tokens_cpu, dp_rank, dp_size=dp_size)
    return start + 1, length


def one_row_more(
    *, global_num_tokens_cpu: list[int], dp_rank: int, dp_size: int
) -> tuple[int, int]:
    start, length = dp_local_slice(global_num_tokens_cpu, dp_rank, dp_size=dp_size)
    return start, length + 1


def empty_at_zero(
    *, global_num_tokens_cpu: list[int], dp_rank: int, dp_size: int
) -> tuple[int, int]:
    start, length = dp_local_slice(global_num_tokens_cpu, dp_rank, dp_size=dp_size)
    return (0, 0) if length == 0 else (start, length)


EXAMPLES = [
    pytest.param(DPLayout((2, 3, 1)), 1, id="sum-len"),
    pytest.param(DPLayout((2, 3, 1), Mode.MAX_LEN), 2, id="max-len"),
    pytest.param(DPLayout((2, 0, 1)), 1, id="empty-rank"),
]


@pytest.mark.parametrize(("layout", "rank"), EXAMPLES)
@pytest.mark.parametrize(
    "target",
    ["dpslice.reference:dp_local_slice", "dpslice.specimens.tensor_path:tensor_path_slice"],
)
def test_int_and_tensor_bounds_give_the_oracles_view(
    target: str, layout: DPLayout, rank: int
) -> None:
    assert CUDA_VIEW.check(load_target(target), (layout, rank)) is None


def test_two_empty_views_are_the_same_wherever_they_start() -> None:
    target = target_from_callable(empty_at_zero)
    assert CUDA_VIEW.check(target, (DPLayout((2, 0, 1)), 1)) is None


@pytest.mark.parametrize(
    ("function", "why"),
    [
        pytest.param(
            shifted,
            "the view starts at storage offset 6 (row 3), the oracle's at 4 (row 2)",
            id="shifted",
        ),
        pytest.param(one_row_more, "the view has shape (4, 2), the oracle's (3, 2)", id="longer"),
    ],
)
def test_another_view_is_a_counterexample(function: object, why: str) -> None:
    target = target_from_callable(function)  # type: ignore[arg-type]
    counterexample = CUDA_VIEW.check(target, (DPLayout((2, 3, 1)), 1))
    assert counterexample is not None
    assert counterexample.why == why
    assert counterexample.expected == "the view buffer[2:5] on cpu: rows r1[0..2]"
    assert counterexample.expected_slice == (2, 3)
