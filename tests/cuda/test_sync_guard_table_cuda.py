"""The guard table, measured on the GPU: what each mode flags, against the stream probe.

The stream probe is the ground truth: it flags exactly the catalogue's
syncing operations.  CUDA mode flags all of them too, including those torch's
debug mode alone misses, and over-approximates in one documented place (a
small pageable non-blocking upload, which waits only past the driver's
staging size); CPU-only mode flags at least 80% of the syncs a CPU run can
see, on CUDA tensors as on CPU tensors, with no false positive.
``python benchmarks/sync_catalog.py`` prints the same table for docs/sync.md.
"""

from __future__ import annotations

import pytest

from benchmarks.sync_catalog import OPS, CatalogOp, TableRow, measure_table, summarise

pytestmark = pytest.mark.cuda

#: What set_sync_debug_mode alone misses: its checks sit in torch's
#: memcpy_and_sync and stream_synchronize only (docs/sync.md), so a device or event
#: synchronize and a pageable non-blocking copy in either direction get past it.
DEBUG_MODE_BLIND_SPOTS = {
    "device_synchronize",
    "event_synchronize",
    "d2h_pageable_non_blocking",
    "h2d_pageable_non_blocking_large",
}
#: CUDA mode flags every pageable non-blocking upload: whether one waits depends
#: on its size and the driver, and pinned memory is the fix either way.
CUDA_MODE_OVER_APPROXIMATIONS = {"h2d_pageable_non_blocking_small"}


@pytest.fixture(scope="module")
def table() -> dict[str, TableRow]:
    return {row.name: row for row in measure_table()}


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_the_stream_probe_flags_exactly_the_syncing_ops(
    table: dict[str, TableRow], op: CatalogOp
) -> None:
    assert table[op.name].flagged["probe"] is op.syncs, op.code


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_cuda_mode_flags_the_syncing_ops_and_only_its_documented_extra(
    table: dict[str, TableRow], op: CatalogOp
) -> None:
    expected = op.syncs or op.name in CUDA_MODE_OVER_APPROXIMATIONS
    assert table[op.name].flagged["cuda"] is expected, op.code


def test_cuda_mode_covers_what_the_debug_mode_alone_misses(table: dict[str, TableRow]) -> None:
    missed = {
        name for name, row in table.items() if row.syncs and not row.flagged["debug_mode_only"]
    }
    assert missed == DEBUG_MODE_BLIND_SPOTS, missed
    assert all(table[name].flagged["cuda"] for name in missed)


@pytest.mark.parametrize("column", ["cpu_on_cuda", "cpu_on_cpu"])
def test_cpu_mode_recall_and_false_positives(table: dict[str, TableRow], column: str) -> None:
    score = summarise(list(table.values()), column)
    assert score["false_positives"] == 0, score
    assert score["flagged"] >= 0.8 * score["syncing"], score
