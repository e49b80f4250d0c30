"""The one runner of untrusted code: workers, their protocol, their deadlines.

Every process dpslice starts to run a target is a runner :class:`Worker`: the
battery's (one, or several side by side) and the round trip's ranks (a group
of them), each forked by a fork server that imported torch and the battery
once (:mod:`~dpslice.runner.forkserver`, the one module that starts
processes).  A worker runs :class:`Job` objects, each a function named by
import path, so this layer imports nothing above it; it tells its supervisor
every step (:mod:`~dpslice.runner.protocol`), and :func:`follow` holds it to
every deadline in one event loop.  A worker stopped before its job returned
leaves a :class:`Stopped`: how, where, and the call in flight, which the check
turns into the counterexample of a call that never came back
(:func:`dpslice.check.inflight.aborted_counterexample`).
"""

from dpslice.runner.protocol import (
    Broke,
    Done,
    Ending,
    How,
    Job,
    Limit,
    Loading,
    Note,
    Phase,
    Stopped,
    signal_name,
)
from dpslice.runner.supervisor import Limits, Worker, Workers, environment, follow, stop_all

__all__ = [
    "Broke",
    "Done",
    "Ending",
    "How",
    "Job",
    "Limit",
    "Limits",
    "Loading",
    "Note",
    "Phase",
    "Stopped",
    "Worker",
    "Workers",
    "environment",
    "follow",
    "signal_name",
    "stop_all",
]
