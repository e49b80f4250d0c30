"""``dpslice check --device cuda``: the sync property in CUDA mode, CUDA views, on a GPU."""

from __future__ import annotations

import pytest

from dpslice.check import Verdict, run_check

pytestmark = pytest.mark.cuda

TENSOR_PATH = "dpslice.specimens.tensor_path:tensor_path_slice"
GPU_PROPERTIES = ["sync_free", "cuda_view"]


def test_the_reference_is_sync_free_in_cuda_mode_and_slices_the_oracles_views() -> None:
    report = run_check(max_examples=100, seed=0, properties=GPU_PROPERTIES, device="cuda")
    assert report.passed, [result.counterexample for result in report.results]
    sync_free = report.result("sync_free")
    assert sync_free.note is not None
    assert sync_free.note.startswith("dpslice.sync CUDA mode")
    assert report.result("cuda_view").examples == 100


def test_the_tensor_paths_cuda_bounds_sync_but_give_the_same_view_hazard_24514() -> None:
    report = run_check(
        TENSOR_PATH, max_examples=100, seed=0, properties=GPU_PROPERTIES, device="cuda"
    )
    assert report.result("cuda_view").verdict is Verdict.PASS
    sync_free = report.result("sync_free")
    assert sync_free.verdict is Verdict.FAIL
    counterexample = sync_free.counterexample
    assert counterexample is not None
    assert "(dpslice.sync, CUDA mode)" in counterexample.expected
    assert "0-dim cuda tensor" in counterexample.why
    assert "Tensor.__getitem__" in counterexample.why
    assert counterexample.why.endswith(": return buffer[start : start + length]")


def test_a_bound_off_by_one_row_is_another_cuda_view() -> None:
    def shifted(*, global_num_tokens_cpu: list[int], dp_rank: int, dp_size: int) -> object:
        from dpslice import dp_local_slice

        start, length = dp_local_slice(global_num_tokens_cpu, dp_rank, dp_size=dp_size)
        return start + 1, length

    report = run_check(shifted, max_examples=100, seed=0, properties=["cuda_view"], device="cuda")
    counterexample = report.result("cuda_view").counterexample
    assert counterexample is not None
    assert "storage offset" in counterexample.why


def test_against_on_cuda_compares_the_views_of_a_real_buffer_and_adds_no_sync() -> None:
    report = run_check(
        TENSOR_PATH,
        against="dpslice.reference:dp_local_slice",
        max_examples=100,
        seed=0,
        properties=["same_slice_as_against", "sync_free", "against_sync_free"],
        device="cuda",
    )
    assert report.target.against is not None
    assert report.target.against.device == "cuda"
    # The same rows in every state the capturer reaches but capture, where the tensor path
    # reads the GPU counts and the reference refuses the None CPU counts deliberately.
    same = report.result("same_slice_as_against")
    if same.verdict is Verdict.FAIL:
        assert same.counterexample is not None
        assert "GRAPH_CAPTURE" in repr(same.counterexample.layout)
    # The reference's ints slice without a sync: comparing the tensor path's bounds with
    # them added none to it; the tensor path's own bounds sync where it is judged.
    assert report.result("against_sync_free").verdict is Verdict.PASS
    assert report.result("sync_free").verdict is Verdict.FAIL
