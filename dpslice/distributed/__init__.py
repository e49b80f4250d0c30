"""The slice, checked against buffers gathered by real torch.distributed collectives
(gloo on CPU, NCCL on GPUs) with the battery's own search, judgement and report::

    report = run_round_trip("dpslice.reference:dp_local_slice", dp_size=2, seed=0)

:class:`RoundTripSession` keeps one group open for several targets; docs/distributed.md
has the details.
"""

from dpslice.distributed.consistency import check_counts_consistency, counts_disagreement
from dpslice.distributed.driver import RoundTripSession
from dpslice.distributed.round_trip import run_round_trip
from dpslice.distributed.search import round_trip_layouts

__all__ = [
    "RoundTripSession",
    "check_counts_consistency",
    "counts_disagreement",
    "round_trip_layouts",
    "run_round_trip",
]
