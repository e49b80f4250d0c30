"""The target as the round trip names it: an import string that crosses process boundaries.

Loading and the calling convention are :mod:`dpslice.check.target`'s; this
module adds only what the round trip needs on top: a file path made absolute
before the spec travels to the ranks, and a :class:`~dpslice.check.target.BadTargetError`
raised as :class:`~dpslice.distributed.errors.TargetLoadError` (a
:class:`~dpslice.distributed.errors.RoundTripConfigError`, same message).
"""

from __future__ import annotations

from pathlib import Path

from dpslice.check.target import BadTargetError, Target, is_file_spec
from dpslice.check.target import load_target as _load_target
from dpslice.contracts import DEFAULT_CONTRACT
from dpslice.distributed.errors import TargetLoadError

__all__ = ["load_target", "resolve_spec"]


def resolve_spec(spec: str) -> str:
    """``spec`` with a file path made absolute, so a process started elsewhere finds it."""
    location, colon, path = spec.rpartition(":")
    if colon and location and is_file_spec(location):
        return f"{Path(location).resolve()}:{path}"
    return spec


def load_target(spec: str) -> Target:
    """:func:`dpslice.check.target.load_target` on the CPU, for the round trip.

    Raises:
        TargetLoadError: the target cannot be loaded or called with the convention
            (the message is :class:`~dpslice.check.target.BadTargetError`'s), or it
            names a contract other than the round trip's, ``sglang-capturer``.
    """
    try:
        target = _load_target(spec)
    except BadTargetError as exc:
        raise TargetLoadError(str(exc)) from None
    if target.contract != DEFAULT_CONTRACT:
        # The ranks gather what sglang's capturer is handed and judge its real rows.
        raise TargetLoadError(
            f"{spec} names the {target.contract.name} contract, and the round trip judges "
            f"only {DEFAULT_CONTRACT.name}'s call site; check it without --distributed"
        )
    return target
