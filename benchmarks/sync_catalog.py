"""The guard table: operations that do and do not sync, and how each mode sees them.

One catalogue serves three readers: the tests (which assert what each mode
must flag), ``docs/sync.md`` (whose table is this program's output, not a
hand copy) and anyone who wants to re-measure on their own torch and GPU,
from a checkout of the repository::

    python benchmarks/sync_catalog.py --markdown table.md --json table.json

It is a measurement, not part of the installed package: it sits beside the
benchmarks, and the tests import it from there, so the measurement a user
reruns is the same code the suite asserts against.

``syncs`` is the ground truth measured by the stream probe on a GPU (see
docs/sync.md for the run); ``cpu_observable`` marks syncs caused by reading
data or by a data-sized output, which CPU-only mode can see without a GPU.
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from dpslice.sync import allow_sync, find_syncs

__all__ = [
    "COLUMNS",
    "OPS",
    "CatalogOp",
    "OpInputs",
    "TableRow",
    "make_inputs",
    "measure",
    "measure_table",
    "render_markdown",
    "summarise",
]


@dataclass(frozen=True)
class OpInputs:
    """The tensors every catalogued operation works on, all on one device."""

    device: torch.device
    buf: torch.Tensor
    start: torch.Tensor
    stop: torch.Tensor
    mask: torch.Tensor
    index: torch.Tensor
    repeats: torch.Tensor
    sorted_seq: torch.Tensor
    other: torch.Tensor
    host: torch.Tensor
    host_large: torch.Tensor | None
    pinned: torch.Tensor | None


#: Elements of ``host_large``: 64 MiB of float32, past the driver's staging for pageable copies.
LARGE_HOST_ELEMENTS = 16 * 2**20


def make_inputs(device: torch.device | str) -> OpInputs:
    """Inputs on ``device``; ``host*`` are pageable CPU memory; ``pinned`` and
    ``host_large`` exist for CUDA inputs only."""
    device = torch.device(device)
    buf = torch.arange(64, dtype=torch.float32, device=device).reshape(16, 4)
    on_cuda = device.type == "cuda"
    return OpInputs(
        device=device,
        buf=buf,
        start=torch.tensor(2, device=device),
        stop=torch.tensor(5, device=device),
        mask=torch.arange(16, device=device) % 3 == 0,
        index=torch.tensor([1, 3, 5, 3], device=device),
        repeats=torch.tensor([1, 2, 0, 3], device=device),
        sorted_seq=torch.linspace(0, 1, 16, device=device),
        other=buf.clone(),
        host=torch.ones(16, 4),
        host_large=torch.ones(LARGE_HOST_ELEMENTS) if on_cuda else None,
        pinned=torch.ones(16, 4).pin_memory() if on_cuda else None,
    )


@dataclass(frozen=True)
class CatalogOp:
    """One operation of the guard table."""

    name: str
    code: str
    syncs: bool
    cpu_observable: bool
    run: Callable[[OpInputs], object]
    cuda_only: bool = False


def _pinned(inputs: OpInputs) -> torch.Tensor:
    assert inputs.pinned is not None, "pinned memory exists only for CUDA inputs"
    return inputs.pinned


def _large_upload(inputs: OpInputs) -> torch.Tensor:
    assert inputs.host_large is not None, "the large host tensor exists only for CUDA inputs"
    return inputs.host_large.to(inputs.device, non_blocking=True)


def _recorded_event() -> Any:
    event: Any = torch.cuda.Event  # untyped in torch
    event = event()
    event.record()
    return event


def _set_masked(inputs: OpInputs) -> None:
    inputs.buf[inputs.mask] = 1.0


OPS: tuple[CatalogOp, ...] = (
    # -- sync, visible without a GPU ----------------------------------------
    CatalogOp("item", "t.item()", True, True, lambda x: x.start.item()),
    CatalogOp("int", "int(t)", True, True, lambda x: int(x.start)),
    CatalogOp("float", "float(t)", True, True, lambda x: float(x.start)),
    CatalogOp("bool", "bool(t) / if t:", True, True, lambda x: bool(x.start)),
    CatalogOp("index", "operator.index(t)", True, True, lambda x: operator.index(x.start)),
    CatalogOp("tensor_slice", "buf[t0:t1]", True, True, lambda x: x.buf[x.start : x.stop]),
    CatalogOp("tensor_index_0d", "buf[t]", True, True, lambda x: x.buf[x.start]),
    CatalogOp("narrow_tensor", "torch.narrow(buf, 0, t, 2)", True, True,
              lambda x: torch.narrow(x.buf, 0, x.start, 2)),
    CatalogOp("tolist", "t.tolist()", True, True, lambda x: x.index.tolist()),
    CatalogOp("repr", "repr(t)", True, True, lambda x: repr(x.buf)),
    CatalogOp("format", 'f"{t}"', True, True, lambda x: f"{x.start}"),
    CatalogOp("cpu", "t.cpu()", True, True, lambda x: x.buf.cpu()),
    CatalogOp("to_cpu", 't.to("cpu")', True, True, lambda x: x.buf.to("cpu")),
    CatalogOp("nonzero", "torch.nonzero(mask)", True, True, lambda x: torch.nonzero(x.mask)),
    CatalogOp("where_1arg", "torch.where(mask)", True, True, lambda x: torch.where(x.mask)),
    CatalogOp("masked_select", "torch.masked_select(v, mask)", True, True,
              lambda x: torch.masked_select(x.buf[:, 0], x.mask)),
    CatalogOp("mask_index", "buf[mask]", True, True, lambda x: x.buf[x.mask]),
    CatalogOp("unique", "torch.unique(t)", True, True, lambda x: torch.unique(x.index)),
    CatalogOp("repeat_interleave", "torch.repeat_interleave(repeats)", True, True,
              lambda x: torch.repeat_interleave(x.repeats)),
    CatalogOp("bincount", "torch.bincount(t)", True, True, lambda x: torch.bincount(x.index)),
    CatalogOp("equal", "torch.equal(a, b)", True, True, lambda x: torch.equal(x.buf, x.other)),
    CatalogOp("allclose", "torch.allclose(a, b)", True, True,
              lambda x: torch.allclose(x.buf, x.other)),
    CatalogOp("contains", "3 in t", True, True, lambda x: 3 in x.index),
    # -- sync, only a GPU shows it ------------------------------------------
    CatalogOp("tensor_from_list", 'torch.tensor(list, device="cuda")', True, False,
              lambda x: torch.tensor([1, 2, 3], device=x.device), cuda_only=True),
    CatalogOp("h2d_blocking", "pageable.cuda()", True, False,
              lambda x: x.host.cuda(), cuda_only=True),
    CatalogOp("h2d_pageable_non_blocking_large", 'pageable_64MiB.to("cuda", non_blocking=True)',
              True, False, _large_upload, cuda_only=True),
    CatalogOp("d2h_pageable_non_blocking", "pageable.copy_(t, non_blocking=True)", True, False,
              lambda x: x.host.copy_(x.buf, non_blocking=True), cuda_only=True),
    CatalogOp("stream_synchronize", "torch.cuda.current_stream().synchronize()", True, False,
              lambda x: torch.cuda.current_stream().synchronize(), cuda_only=True),
    CatalogOp("device_synchronize", "torch.cuda.synchronize()", True, False,
              lambda x: torch.cuda.synchronize(), cuda_only=True),
    CatalogOp("event_synchronize", "event.record(); event.synchronize()", True, False,
              lambda x: _recorded_event().synchronize(), cuda_only=True),
    # -- no sync ------------------------------------------------------------
    CatalogOp("int_slice", "buf[2:5]", False, False, lambda x: x.buf[2:5]),
    CatalogOp("int_index", "buf[2]", False, False, lambda x: x.buf[2]),
    CatalogOp("int_narrow", "buf.narrow(0, 2, 3)", False, False, lambda x: x.buf.narrow(0, 2, 3)),
    CatalogOp("scalar_plus_tensor", "3 + t", False, False, lambda x: 3 + x.start),
    CatalogOp("index_select", "torch.index_select(buf, 0, idx)", False, False,
              lambda x: torch.index_select(x.buf, 0, x.index)),
    CatalogOp("int_tensor_index", "buf[idx]", False, False, lambda x: x.buf[x.index]),
    CatalogOp("searchsorted", "torch.searchsorted(seq, v)", False, False,
              lambda x: torch.searchsorted(x.sorted_seq, x.sorted_seq)),
    CatalogOp("cumsum", "torch.cumsum(t, 0)", False, False, lambda x: torch.cumsum(x.repeats, 0)),
    CatalogOp("max", "t.max()", False, False, lambda x: x.buf.max()),
    CatalogOp("any", "mask.any()", False, False, lambda x: x.mask.any()),
    CatalogOp("nonzero_static", "torch.nonzero_static(mask, size=4)", False, False,
              lambda x: torch.nonzero_static(x.mask, size=4)),
    CatalogOp("repeat_interleave_sized", "torch.repeat_interleave(r, output_size=6)", False,
              False, lambda x: torch.repeat_interleave(x.repeats, output_size=6)),
    CatalogOp("where_3arg", "torch.where(mask, a, b)", False, False,
              lambda x: torch.where(x.mask[:, None], x.buf, x.other)),
    CatalogOp("masked_fill_setitem", "buf[mask] = 1.0", False, False, _set_masked),
    # Staged by the driver at once: no wait at this size (see docs/sync.md).
    CatalogOp("h2d_pageable_non_blocking_small", 'pageable_256B.to("cuda", non_blocking=True)',
              False, False, lambda x: x.host.to(x.device, non_blocking=True), cuda_only=True),
    CatalogOp("d2h_to_cpu_non_blocking", 't.to("cpu", non_blocking=True)', False, False,
              lambda x: x.buf.to("cpu", non_blocking=True)),
    CatalogOp("h2d_pinned_non_blocking", 'pinned.to("cuda", non_blocking=True)', False, False,
              lambda x: _pinned(x).to(x.device, non_blocking=True), cuda_only=True),
    CatalogOp("d2h_pinned_non_blocking", "pinned.copy_(t, non_blocking=True)", False, False,
              lambda x: _pinned(x).copy_(x.buf, non_blocking=True), cuda_only=True),
    CatalogOp("event_query", "event.record(); event.query()", False, False,
              lambda x: _recorded_event().query(), cuda_only=True),
    CatalogOp("stream_query", "torch.cuda.current_stream().query()", False, False,
              lambda x: torch.cuda.current_stream().query(), cuda_only=True),
)  # fmt: skip

#: Table columns: ``(key, mode, options, inputs device)``.
COLUMNS: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("probe", "probe", {"sleep_ms": 50.0}, "cuda"),
    ("cuda", "cuda", {}, "cuda"),
    ("debug_mode_only", "cuda", {"extra_hooks": False}, "cuda"),
    ("cpu_on_cuda", "cpu", {}, "cuda"),
    ("cpu_on_cpu", "cpu", {}, "cpu"),
)
_HEADINGS = {
    "probe": "stream probe",
    "cuda": "CUDA mode",
    "debug_mode_only": "set_sync_debug_mode alone",
    "cpu_on_cuda": "CPU-only mode, CUDA tensors",
    "cpu_on_cpu": "CPU-only mode, CPU tensors",
}


def measure(op: CatalogOp, inputs: OpInputs, mode: str, **options: Any) -> bool:
    """Whether ``mode`` flags ``op`` on ``inputs`` (GPU modes: after one warm-up run).

    The warm-up keeps one-off costs out of the measurement: kernel loading
    and the first allocation of a memory block can block the host too.
    """
    if inputs.device.type == "cuda":
        with allow_sync():
            op.run(inputs)
            torch.cuda.synchronize()
    flagged = bool(find_syncs(lambda: op.run(inputs), mode=mode, **options))  # type: ignore[arg-type]
    if inputs.device.type == "cuda":
        with allow_sync():
            torch.cuda.synchronize()
    return flagged


@dataclass(frozen=True)
class TableRow:
    """One operation's measurement; ``None`` where a column does not apply."""

    name: str
    code: str
    syncs: bool
    cpu_observable: bool
    flagged: dict[str, bool | None]


def measure_table(columns: Sequence[str] | None = None) -> list[TableRow]:
    """Measure every catalogued operation under each column (GPU columns need a GPU)."""
    chosen = [column for column in COLUMNS if columns is None or column[0] in columns]
    inputs: dict[str, OpInputs] = {}
    rows = []
    for op in OPS:
        flagged: dict[str, bool | None] = {}
        for key, mode, options, device in chosen:
            if device == "cpu" and op.cuda_only:
                flagged[key] = None
                continue
            if device not in inputs:
                inputs[device] = make_inputs(device)
            flagged[key] = measure(op, inputs[device], mode, **options)
        rows.append(TableRow(op.name, op.code, op.syncs, op.cpu_observable, flagged))
    return rows


def summarise(rows: Sequence[TableRow], key: str) -> dict[str, int]:
    """Recall and false positives of one column against ``syncs``.

    CPU-only columns are scored on the syncs they could see (``cpu_observable``).
    """
    cpu_column = key.startswith("cpu")
    scored = [row for row in rows if row.flagged.get(key) is not None]
    syncing = [row for row in scored if row.syncs and (row.cpu_observable or not cpu_column)]
    clean = [row for row in scored if not row.syncs]
    return {
        "syncing": len(syncing),
        "flagged": sum(bool(row.flagged[key]) for row in syncing),
        "clean": len(clean),
        "false_positives": sum(bool(row.flagged[key]) for row in clean),
    }


def render_markdown(rows: Sequence[TableRow]) -> str:
    """The guard table as Markdown, with a recall / false-positive line per column."""
    keys = [key for key, *_ in COLUMNS if any(key in row.flagged for row in rows)]
    mark = {True: "flags", False: "-", None: "n/a"}
    lines = [
        "| op | code | syncs | " + " | ".join(_HEADINGS[key] for key in keys) + " |",
        "|---" * (3 + len(keys)) + "|",
    ]
    for row in rows:
        cells = [mark[row.flagged.get(key)] for key in keys]
        syncs = ("yes" if row.syncs else "no") + (" (cpu-visible)" if row.cpu_observable else "")
        lines.append(f"| {row.name} | `{row.code}` | {syncs} | " + " | ".join(cells) + " |")
    lines.append("")
    for key in keys:
        score = summarise(rows, key)
        lines.append(
            f"- {_HEADINGS[key]}: flags {score['flagged']}/{score['syncing']} syncing ops, "
            f"{score['false_positives']}/{score['clean']} false positives"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the dpslice guard table.")
    parser.add_argument("--markdown", help="write the Markdown table here")
    parser.add_argument("--json", help="write the raw measurement here")
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU-tensor column")
    args = parser.parse_args(argv)
    gpu = torch.cuda.is_available() and not args.cpu_only
    rows = measure_table(None if gpu else ["cpu_on_cpu"])
    table = render_markdown(rows)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(table)
    if args.json:
        meta = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name() if gpu else None}
        with open(args.json, "w") as handle:
            json.dump({"meta": meta, "rows": [asdict(row) for row in rows]}, handle, indent=1)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
