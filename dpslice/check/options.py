"""``dpslice check``'s options: their ``argparse`` types (each returns the value or raises
``argparse.ArgumentTypeError``, a usage error), and those the pytest plugin shares."""

from __future__ import annotations

import argparse
import math
from typing import Any

from dpslice.isolation import DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_EXAMPLES

__all__ = [
    "SHARED",
    "call_seconds",
    "contract_name",
    "job_count",
    "load_options",
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


def load_options(contract: str | None, against: str | None) -> dict[str, str]:
    """The keywords, besides the spec, a worker passes ``load_target``: those given."""
    return {name: value for name, value in (("contract", contract), ("against", against)) if value}


#: The options of ``dpslice check --NAME`` that ``pytest --dpslice-NAME`` shares, as
#: ``argparse`` keywords by NAME.
SHARED: dict[str, dict[str, Any]] = {
    "contract": {
        "type": contract_name,
        "metavar": "NAME",
        "help": "the call site the target is judged as: a preset (--list-contracts) or "
        "module:NAME of your own (default: the one the target names, else sglang-capturer)",
    },
    "against": {
        "metavar": "OLD",
        "help": "compare TARGET with OLD (named as TARGET is): both are called with the same "
        "inputs in every state the contract (TARGET's, or --contract) reaches; a different "
        "answer FAILs, a different refusal of an invalid input WARNs",
    },
    "strict": {
        "action": "store_true",
        "help": "a hardening property's failure (an input no engine produces, accepted) "
        "FAILs instead of WARNing",
    },
    "device": {
        "metavar": "DEVICE",
        "help": "where global_num_tokens_gpu is built: cpu (default) or cuda, which also runs "
        "the sync property in CUDA mode and the CUDA view property",
    },
    "max-examples": {
        "type": positive_int,
        "metavar": "N",
        "help": f"examples per property, before shrinking (default: {DEFAULT_MAX_EXAMPLES})",
    },
    "seed": {
        "type": seed_number,
        "metavar": "S",
        "help": "Hypothesis seed (default: random, printed)",
    },
    "timeout": {
        "type": call_seconds,
        "metavar": "SECONDS",
        "help": "seconds one call of the target may take before it fails as "
        f"hung (default: {DEFAULT_CALL_TIMEOUT:g})",
    },
}
