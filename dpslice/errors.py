"""Every exception dpslice defines, under four roots that say whose fault it is.

:class:`InvalidInputError` (bad input to a slice or a layout), :class:`SyncError` (a
guard caught a host-device sync, or cannot run), :class:`CheckError` (the check could
not judge the target) and :class:`~dpslice.distributed.errors.TargetAbortedError` (the
target never returned from a round trip: a verdict).  All are imported from here but
the four round-trip errors, whose constructors take the round trip's own types
(:mod:`dpslice.distributed.errors`).  Each message says what was wrong, why it
matters, and what to do instead.
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
    """A count, rank, size or extent is not an int, or the graph flag not a bool."""


class TensorInputError(InvalidInputError):
    """A tensor or array where Python ints are expected: refused unread, as reading it may sync."""


class InvalidLayoutError(InvalidInputError):
    """A ground-truth layout description is inconsistent (see :class:`dpslice.DPLayout`)."""


class CountsDisagreementError(InvalidInputError):
    """A rank's ``global_num_tokens_cpu`` disagrees with its ``global_num_tokens_gpu``."""


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
    """Root of the sync guards' errors (:mod:`dpslice.sync`)."""


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


class CheckError(Exception):
    """Root of the check tool's errors: it could not judge the target, which is not a verdict."""


class BadTargetError(CheckError):
    """The target cannot be loaded or cannot be called with the check's convention."""


class DeviceError(CheckError):
    """The check was asked for a device it does not know, or one this machine lacks."""


class UnknownPropertyError(CheckError):
    """A property was asked for by a name nobody registered."""


class InvalidContractError(CheckError):
    """A contract (see :mod:`dpslice.contracts`) is malformed or cannot be found."""


class CheckBrokeError(CheckError):
    """The check itself broke (its worker could not start, or failed in its own code)."""


class CheckConfigError(CheckError):
    """The check cannot run as asked: a bad option, or a round trip this machine cannot run."""


class RoundTripError(CheckError):
    """Root of the round trip's errors (:mod:`dpslice.distributed`): no verdict was reached."""
