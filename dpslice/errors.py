"""Every exception dpslice defines, under four roots that say whose fault it is.

* :class:`InvalidInputError`, a :class:`ValueError`: the *inputs* are invalid -- the
  arguments of a slice call (:func:`dpslice.dp_local_slice`), a layout
  description (:class:`dpslice.DPLayout`), or the engine state a slice reads (a
  rank's CPU and GPU count lists that disagree).  Callers that already catch
  ``ValueError`` keep working.
* :class:`SyncError`, a :class:`RuntimeError` like the error torch's own sync
  debug mode raises: a sync guard (:mod:`dpslice.sync`) caught code
  synchronising the host with the GPU, or cannot run here.  Not a value error:
  nothing was wrong with the values, the code did something it must not.
* :class:`CheckError`, an :class:`Exception`: the check tool (``dpslice
  check``, :mod:`dpslice.check`, :mod:`dpslice.distributed`) could not do its
  job -- a bad target, device, property name or contract, or a round trip
  that could not reach a verdict, or options it cannot run with
  (:class:`CheckConfigError`, in every mode).  A wrong slice is none of these:
  it is a counterexample in the check's report.
* :class:`~dpslice.distributed.errors.TargetAbortedError`, an
  :class:`Exception`: the *target* never returned from a call of a round trip,
  or ended its rank's process, so the group had to be killed; it carries the
  counterexample.  The target's fault, and a verdict, not a harness failure.

Every class has exactly one parent.  Each is also importable where it is used
(``dpslice``, :mod:`dpslice.sync`, :mod:`dpslice.check`,
:mod:`dpslice.distributed`).  Three round-trip errors whose constructors take
the round trip's own types (:class:`~dpslice.distributed.errors.RoundTripTimeoutError`,
:class:`~dpslice.distributed.errors.RankFailedError`,
:class:`~dpslice.distributed.errors.GatherMismatchError`, under :class:`RoundTripError`,
and :class:`~dpslice.distributed.errors.TargetAbortedError`) live in
:mod:`dpslice.distributed.errors`.

Each message says what was wrong, why it matters, and what to do instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = [
    "BadTargetError",
    "CheckBrokeError",
    "CheckConfigError",
    "CheckError",
    "CountExceedsExtentError",
    "CountsDisagreementError",
    "CountsLengthError",
    "CountsUnavailableError",
    "DeviceError",
    "ImplicitSyncError",
    "InvalidContractError",
    "InvalidDPSizeError",
    "InvalidGraphExtentError",
    "InvalidInputError",
    "InvalidLayoutError",
    "NegativeCountError",
    "NonIntegerError",
    "RankOutOfRangeError",
    "RoundTripError",
    "SyncError",
    "SyncModeUnavailableError",
    "TensorInputError",
    "UnknownPropertyError",
]


# -- invalid inputs -----------------------------------------------------------


class InvalidInputError(ValueError):
    """Root of the invalid-input errors: a slice call's arguments or a layout are wrong."""


class CountsUnavailableError(InvalidInputError):
    """The CPU token counts are ``None``: the capture phase, or DP attention off."""


class InvalidGraphExtentError(InvalidInputError):
    """The graph extent or batch size is negative, or the rows per request below 1."""


class CountExceedsExtentError(InvalidInputError):
    """A rank holds more tokens than the graph extent: it would read the next rank's rows."""


class CountsLengthError(InvalidInputError):
    """The count list is neither one entry (skipped gather) nor one entry per DP rank."""


class RankOutOfRangeError(InvalidInputError):
    """The DP rank is not in ``range(dp_size)``."""


class InvalidDPSizeError(InvalidInputError):
    """The DP size is smaller than one."""


class NegativeCountError(InvalidInputError):
    """A token count is negative."""


class NonIntegerError(InvalidInputError):
    """A count, rank, size or extent is not an int (bool, float, str, ...).

    Also raised when the graph flag is not a bool.
    """


class TensorInputError(InvalidInputError):
    """A tensor or array was passed where Python ints are expected.

    Reading its value could force a host-device synchronisation, which is the
    very stall the CPU slice exists to avoid, so it is refused unread.
    """


class InvalidLayoutError(InvalidInputError):
    """A ground-truth layout description is inconsistent (see :class:`dpslice.DPLayout`)."""


class CountsDisagreementError(InvalidInputError):
    """A rank's ``global_num_tokens_cpu`` disagrees with its ``global_num_tokens_gpu``.

    The CPU slice trusts the list and the old GPU path trusts the tensor; both
    are filled from the same all-gather and must agree (the consistency
    assumption flagged in review of sglang PR 24550).  Raised by
    :func:`dpslice.distributed.check_counts_consistency`.
    """


# -- host-device syncs --------------------------------------------------------


class _SyncEventLike(Protocol):
    """What :class:`ImplicitSyncError` reads of a :class:`dpslice.sync.SyncEvent`."""

    @property
    def op(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def lineno(self) -> int: ...
    @property
    def mode(self) -> str: ...
    @property
    def where(self) -> str: ...
    def details(self) -> str: ...


class SyncError(RuntimeError):
    """Root of the sync guards' errors (:mod:`dpslice.sync`).

    A ``RuntimeError``, like the error torch's own sync debug mode raises, so
    code written against that keeps catching it.
    """


class ImplicitSyncError(SyncError):
    """Code under a guard synchronised the host with the GPU.

    ``events`` holds what was seen (at least one :class:`dpslice.sync.SyncEvent`);
    ``op``, ``filename`` and ``lineno`` are the first event's.
    """

    def __init__(self, events: Sequence[_SyncEventLike], *, caught: bool = False) -> None:
        self.events = tuple(events)
        #: The code under the guard caught the error raised at the sync and
        #: carried on; the guard raised this one at its exit instead.
        self.caught = caught
        first = self.events[0]
        self.op = first.op
        self.filename = first.filename
        self.lineno = first.lineno
        if len(self.events) == 1:
            heading = f"{first.op} synchronised the host with the GPU at {first.where}"
            body = first.details()
        else:
            heading = f"{len(self.events)} host-device synchronisations"
            body = "\n".join(f"- {event}" for event in self.events)
        if caught:
            body += (
                "\nThe code under the guard caught the error raised at the sync and carried on "
                "(an `except Exception` around it?); the guard fails at its exit instead."
            )
        super().__init__(
            f"{heading} (dpslice.sync, {first.mode} mode)\n{body}\n"
            "A sync blocks the host until every queued kernel has finished, which defeats "
            "overlap scheduling, and it cannot be captured in a CUDA graph. Keep the value on "
            "the device or compute it from CPU-side data (e.g. dpslice.dp_local_slice on "
            "global_num_tokens_cpu); wrap a sync you intend in dpslice.sync.allow_sync()."
        )


class SyncModeUnavailableError(SyncError):
    """The requested guard cannot run here (e.g. CUDA or probe mode without a GPU)."""


# -- the check tool -----------------------------------------------------------


class CheckError(Exception):
    """Root of the check tool's errors: it could not judge the target, which is not a verdict."""


class BadTargetError(CheckError):
    """The target cannot be loaded or cannot be called with the check's convention.

    The message is one line: what is wrong and what to do.
    """


class DeviceError(CheckError):
    """The check was asked for a device it does not know, or one this machine lacks."""


class UnknownPropertyError(CheckError):
    """A property was asked for by a name nobody registered."""


class InvalidContractError(CheckError):
    """A contract (see :mod:`dpslice.contracts`) is malformed or cannot be found.

    It concerns how a check is set up, not a slice's inputs.
    """


class CheckBrokeError(CheckError):
    """The check itself broke (its worker could not start, or failed in its own code)."""


class CheckConfigError(CheckError):
    """The check cannot run as asked: a bad option (``max_examples``, a seed, a timeout), or,
    for a round trip, a DP size, backend or machine it cannot run on (too few GPUs)."""


class RoundTripError(CheckError):
    """Root of the round trip's errors (:mod:`dpslice.distributed`): no verdict was reached."""
