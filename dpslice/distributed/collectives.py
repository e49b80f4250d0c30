"""One forward's gathers, done as engines do them, with real torch.distributed collectives.

Each rank knows only its own token count, the mode, the attention-TP size and the
graph extent; the other counts arrive through an all-gather, and the buffer through
the mode's collective: SUM_LEN an ``all_reduce(SUM)`` of a zero buffer holding the
rank's rows at its prefix sum, MAX_LEN and GRAPH_REPLAY an all-gather of the rows
padded to the largest count or the graph extent, a skipped gather none.  Rows are
tagged as in :meth:`dpslice.DPLayout.gathered`, which the result is compared with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.distributed as dist

from dpslice._numpy_notice import torch
from dpslice.layout import PAD_ROW, DPLayout, Mode

# torch 2.13 renamed the tensor all-gather to all_gather_single and left
# all_gather_into_tensor as a deprecated alias (a FutureWarning per call site);
# earlier versions have only the old name.  Same collective either way.
_all_gather_tensor: Callable[..., object] = getattr(
    dist, "all_gather_single", dist.all_gather_into_tensor
)


class RowGatherer:
    """All-gathers equal-sized row blocks into one tensor, as engines do; where gloo
    refuses the tensor form (before torch 2.13), into a list, concatenated.  :meth:`probe`
    decides once at start-up, when every rank runs the same probe."""

    def __init__(self) -> None:
        self.tensor_form = True

    def probe(self, device: torch.device) -> None:
        """Decide which form to use; also warms the communicator up."""
        block = torch.zeros((1, 2), dtype=torch.int64, device=device)
        out = torch.empty((dist.get_world_size(), 2), dtype=torch.int64, device=device)
        try:
            _all_gather_tensor(out, block)
        except RuntimeError as error:
            if "support" not in str(error):
                raise
            self.tensor_form = False
            parts = [torch.empty_like(block) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, block)

    def gather(self, block: torch.Tensor) -> torch.Tensor:
        """Every rank's ``block`` (same shape everywhere), concatenated along rows in rank order."""
        world = dist.get_world_size()
        if block.numel() == 0:
            # Every rank's block has this shape, so every rank skips alike; how
            # backends treat zero-element collectives has varied between versions.
            return block.new_empty((0, *block.shape[1:]))
        if self.tensor_form:
            out = block.new_empty((world * block.shape[0], *block.shape[1:]))
            _all_gather_tensor(out, block.contiguous())
            return out
        parts = [torch.empty_like(block) for _ in range(world)]
        dist.all_gather(parts, block.contiguous())
        return torch.cat(parts)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _tagged(rank: int, count: int, extent: int, device: torch.device) -> torch.Tensor:
    """Rank ``rank``'s ``count`` tagged tokens, padded with its pad rows to ``extent`` rows."""
    rows = torch.full((extent, 2), PAD_ROW, dtype=torch.int64, device=device)
    rows[:, 0] = rank
    rows[:count, 1] = torch.arange(count, dtype=torch.int64, device=device)
    return rows


@dataclass(frozen=True)
class GatheredForward:
    """What one rank holds after the forward's gathers.

    Attributes:
        global_num_tokens_cpu: the CPU count list the engine hands the slicer.
        global_num_tokens_gpu: the counts tensor on the rank's device, derived
            on the device from the gathered counts (not copied from the list).
        peer_lists: the full count list every rank derived, one row per rank,
            all-gathered: every row must be the same.
        buffer: the gathered ``(rows, 2)`` tag buffer.
    """

    global_num_tokens_cpu: list[int]
    global_num_tokens_gpu: torch.Tensor
    peer_lists: list[list[int]]
    buffer: torch.Tensor


def gather_forward(
    layout: DPLayout, rank: int, gatherer: RowGatherer, device: torch.device
) -> GatheredForward:
    """Run rank ``rank``'s side of ``layout``'s gathers; every rank must call it together.

    Reads only what the rank itself knows: ``layout.counts[rank]``, the mode,
    the attention-TP size, the graph extent and whether the gather is skipped.
    Capture layouts are not gathered here (no CPU counts to check).
    """
    if layout.mode is Mode.GRAPH_CAPTURE:
        raise ValueError("capture layouts have no CPU counts; the round trip draws eager/replay")
    tp = layout.attn_tp_size
    count_block = torch.tensor([layout.counts[rank]], dtype=torch.int64, device=device)
    counts_gpu = gatherer.gather(count_block)
    counts = [int(count) for count in counts_gpu.tolist()]
    rows = [_round_up(count, tp) for count in counts]
    rows_gpu = (counts_gpu + (tp - 1)) // tp * tp
    if layout.mode is Mode.MAX_LEN:
        # sglang overwrites the CPU list with the padded one before any reader runs.
        owned = [max(rows)] * len(rows)
        owned_gpu = rows_gpu.max().repeat(len(rows))
    elif layout.mode is Mode.GRAPH_REPLAY:
        # A decode-graph replay skips that preparation: the counts stay raw.
        owned, owned_gpu = counts, counts_gpu
    else:
        owned, owned_gpu = rows, rows_gpu
    peers = gatherer.gather(torch.tensor([owned], dtype=torch.int64, device=device))
    if layout.gather_skipped:
        cpu, gpu = [owned[rank]], owned_gpu[rank : rank + 1].clone()
    else:
        cpu, gpu = owned, owned_gpu

    if layout.mode is Mode.GRAPH_REPLAY:
        assert layout.graph_extent is not None
        region = layout.graph_extent
    elif layout.mode is Mode.MAX_LEN:
        region = max(rows)
    else:
        region = rows[rank]
    mine = _tagged(rank, layout.counts[rank], region, device)
    if layout.gather_skipped:
        buffer = mine
    elif layout.mode is Mode.SUM_LEN:
        start = sum(rows[:rank])
        buffer = torch.zeros((sum(rows), 2), dtype=torch.int64, device=device)
        buffer[start : start + region] = mine
        if buffer.numel():  # the summed length is the same on every rank: all skip alike
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    else:
        buffer = gatherer.gather(mine)
    return GatheredForward(
        global_num_tokens_cpu=cpu,
        global_num_tokens_gpu=gpu,
        peer_lists=[[int(value) for value in row] for row in peers.tolist()],
        buffer=buffer,
    )
