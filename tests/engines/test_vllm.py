"""vLLM's own routed-experts capturer slice under the check (``vllm-dp``).

Skips without vLLM (it is not part of CI: docs/engines.md says how to install it);
``DPSLICE_REQUIRE_ENGINE=vllm`` makes that an error.
"""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from dpslice.check import Verdict, run_check
from dpslice.check.registry import Tier
from tests.engines.conftest import import_engine


@pytest.fixture(scope="module")
def vllm() -> ModuleType:
    return import_engine("vllm")


def test_restore_local_topk_ids_takes_each_ranks_rows_of_the_gathered_buffer(
    vllm: ModuleType,
) -> None:
    counts = torch.tensor([3, 2, 4], dtype=torch.int32)
    slices = [
        vllm.restore_local_topk_ids(global_num_tokens_cpu=counts, dp_rank=rank) for rank in range(3)
    ]
    assert slices == [(0, 3), (3, 2), (5, 4)]


def test_restore_local_topk_ids_holds_every_hazard_property_under_vllm_dp(
    vllm: ModuleType,
) -> None:
    report = run_check(vllm.restore_local_topk_ids, seed=0, max_examples=200)
    assert report.contract.name == "vllm-dp"
    hazards = [result for result in report.results if result.tier is Tier.HAZARD]
    assert [(r.name, r.verdict) for r in hazards if r.verdict is Verdict.FAIL] == []
    assert report.result("sum_len_rows").verdict is Verdict.PASS
