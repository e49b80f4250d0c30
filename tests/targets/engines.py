"""A user's own contract and the slice it describes, as a downstream project writes them."""

from __future__ import annotations

from dpslice import Mode
from dpslice.contracts import Contract, Owns

#: An engine that only ever slices eager, packed buffers and owns whole blocks.
PACKED_ONLY = Contract(
    name="packed-only",
    summary="an engine whose only call site slices eager SUM_LEN buffers",
    modes=frozenset({Mode.SUM_LEN}),
    owns=Owns.PADDED_BLOCK,
    attn_tp_sizes=(1, 2),
)

NOT_A_CONTRACT = "packed-only"


def packed_slice(*, global_num_tokens_cpu, dp_rank):
    """Right on SUM_LEN buffers, and nowhere else: no graph, no skipped gather."""
    return sum(global_num_tokens_cpu[:dp_rank]), global_num_tokens_cpu[dp_rank]


packed_slice.__dpslice_contract__ = "tests.targets.engines:PACKED_ONLY"
