"""``argparse`` types of ``dpslice check``'s options, shared with the torchrun entry point.

Each returns the value or raises ``argparse.ArgumentTypeError``, a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import math

__all__ = [
    "call_seconds",
    "contract_name",
    "job_count",
    "positive_int",
    "positive_seconds",
    "seed_number",
]


def positive_int(text: str) -> int:
    """An int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def job_count(text: str) -> int:
    """``-j``: ``auto`` (:func:`~dpslice.isolation.auto_jobs`) or an int >= 1."""
    if text.strip().lower() == "auto":
        from dpslice.isolation import auto_jobs

        return auto_jobs()
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}: pass auto or a number of workers") from None


def positive_seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number of seconds")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not above 0")
    return value


def call_seconds(text: str) -> float:
    """``--timeout``: seconds the check can time one call by."""
    from dpslice.isolation import check_call_timeout

    try:
        return check_call_timeout(positive_seconds(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def contract_name(text: str) -> str:
    """``--contract``: a name, not an empty string that would leave the default in force."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "needs a contract: a preset's name (dpslice check --list-contracts) or "
            "module:NAME of your own"
        )
    return text


def seed_number(text: str) -> int:
    """``--seed``: an int >= 0."""
    from dpslice.check.results import check_seed
    from dpslice.errors import CheckConfigError

    try:
        return check_seed(int(text))
    except (ValueError, CheckConfigError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an int >= 0") from None
