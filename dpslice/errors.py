"""The explicit errors of the DP-local slice.

Every error is a :class:`DPSliceError`, itself a :class:`ValueError`, so callers
that already catch ``ValueError`` keep working.  There is one subclass per cause;
each message says what was wrong, why it matters for the gathered buffer, and
what to do instead.
"""

from __future__ import annotations

__all__ = [
    "CountExceedsExtentError",
    "CountsLengthError",
    "CountsUnavailableError",
    "DPSliceError",
    "InvalidContractError",
    "InvalidDPSizeError",
    "InvalidGraphExtentError",
    "InvalidLayoutError",
    "NegativeCountError",
    "NonIntegerError",
    "RankOutOfRangeError",
    "TensorInputError",
]


class DPSliceError(ValueError):
    """Root of every error dpslice raises on purpose."""


class CountsUnavailableError(DPSliceError):
    """The CPU token counts are ``None``: the capture phase, or DP attention off."""


class InvalidGraphExtentError(DPSliceError):
    """The graph extent or batch size is negative, or the rows per request below 1."""


class CountExceedsExtentError(DPSliceError):
    """A rank holds more tokens than the graph extent: it would read the next rank's rows."""


class CountsLengthError(DPSliceError):
    """The count list is neither one entry (skipped gather) nor one entry per DP rank."""


class RankOutOfRangeError(DPSliceError):
    """The DP rank is not in ``range(dp_size)``."""


class InvalidDPSizeError(DPSliceError):
    """The DP size is smaller than one."""


class NegativeCountError(DPSliceError):
    """A token count is negative."""


class NonIntegerError(DPSliceError):
    """A count, rank, size or extent is not an int (bool, float, str, ...).

    Also raised when the graph flag is not a bool.
    """


class TensorInputError(DPSliceError):
    """A tensor or array was passed where Python ints are expected.

    Reading its value could force a host-device synchronisation, which is the
    very stall the CPU slice exists to avoid, so it is refused unread.
    """


class InvalidLayoutError(DPSliceError):
    """A ground-truth layout description is inconsistent (see :class:`dpslice.DPLayout`)."""


class InvalidContractError(ValueError):
    """A contract (see :mod:`dpslice.contracts`) is malformed or cannot be found.

    Not a :class:`DPSliceError`: it concerns how a check is set up, not a slice's inputs.
    """
