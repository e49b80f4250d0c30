"""The slice, checked against buffers gathered by real torch.distributed collectives.

A process group of ``dp_size`` ranks (gloo on CPU, NCCL on GPUs) gathers
tagged rows the ways engines do (SUM_LEN all-reduce, MAX_LEN and graph-replay
all-gathers, attention-TP rounding, skipped gathers); every rank then slices
the gathered buffer with the implementation under test and must recover
exactly its own rows.  Hypothesis draws the layouts in the driver and shrinks
a failure to a minimal layout and the rank that saw it.

    report = run_round_trip("dpslice.reference:dp_local_slice", dp_size=2, seed=0)
    print(render_text(report))  # dpslice.check.report: verdict, cost, counterexample

The search, the judgement of each rank's slice, the counterexample and the
report are the battery's (:mod:`dpslice.check`); only the gathering differs.

One group evaluates every layout; :class:`RoundTripSession` keeps it open for
several targets.  The ranks are spawned, so call this under
``if __name__ == "__main__":``.  docs/distributed.md has the details.

Under ``torchrun``, see :mod:`dpslice.distributed.torchrun`.
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
