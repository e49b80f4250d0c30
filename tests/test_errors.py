"""dpslice.errors: every exception in one module, under three roots that mean what they say."""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import sys
from pathlib import Path

import pytest

import dpslice.errors
from dpslice.distributed.errors import (
    GatherMismatchError,
    RankFailedError,
    RoundTripTimeoutError,
    TargetAbortedError,
)
from dpslice.errors import (
    BadTargetError,
    CheckBrokeError,
    CheckConfigError,
    CheckError,
    CountExceedsExtentError,
    CountsDisagreementError,
    CountsLengthError,
    CountsUnavailableError,
    DeviceError,
    ImplicitSyncError,
    InvalidContractError,
    InvalidDPSizeError,
    InvalidGraphExtentError,
    InvalidInputError,
    InvalidLayoutError,
    NegativeCountError,
    NonIntegerError,
    RankOutOfRangeError,
    RoundTripError,
    SyncError,
    SyncModeUnavailableError,
    TensorInputError,
    UnknownPropertyError,
)

#: The four roots, one per kind of fault, and the one builtin each sits under.
ROOTS: dict[type[Exception], type[Exception]] = {
    InvalidInputError: ValueError,
    SyncError: RuntimeError,
    CheckError: Exception,
    TargetAbortedError: Exception,
}

#: Where users import the slice's input errors from, besides dpslice.errors.
_SLICE = ("dpslice",)
_SYNC = ("dpslice.sync",)
_ROUND_TRIP = ("dpslice.distributed", "dpslice.distributed.errors")

#: Every public exception: its one parent, its root, and the modules that re-export it.
TABLE: list[tuple[type[Exception], type[Exception], type[Exception], tuple[str, ...]]] = [
    (InvalidInputError, ValueError, InvalidInputError, _SLICE),
    (CountsUnavailableError, InvalidInputError, InvalidInputError, _SLICE),
    (InvalidGraphExtentError, InvalidInputError, InvalidInputError, _SLICE),
    (CountExceedsExtentError, InvalidInputError, InvalidInputError, _SLICE),
    (CountsLengthError, InvalidInputError, InvalidInputError, _SLICE),
    (RankOutOfRangeError, InvalidInputError, InvalidInputError, _SLICE),
    (InvalidDPSizeError, InvalidInputError, InvalidInputError, _SLICE),
    (NegativeCountError, InvalidInputError, InvalidInputError, _SLICE),
    (NonIntegerError, InvalidInputError, InvalidInputError, _SLICE),
    (TensorInputError, InvalidInputError, InvalidInputError, _SLICE),
    (InvalidLayoutError, InvalidInputError, InvalidInputError, _SLICE),
    (CountsDisagreementError, InvalidInputError, InvalidInputError, _ROUND_TRIP),
    (SyncError, RuntimeError, SyncError, _SYNC),
    (ImplicitSyncError, SyncError, SyncError, _SYNC),
    (SyncModeUnavailableError, SyncError, SyncError, _SYNC),
    (CheckError, Exception, CheckError, ("dpslice.check",)),
    (BadTargetError, CheckError, CheckError, ("dpslice.check", "dpslice.check.target")),
    (DeviceError, CheckError, CheckError, ("dpslice.check", "dpslice.check.target")),
    (UnknownPropertyError, CheckError, CheckError, ("dpslice.check", "dpslice.check.registry")),
    (InvalidContractError, CheckError, CheckError, ("dpslice",)),
    (CheckBrokeError, CheckError, CheckError, ("dpslice.supervision.supervisor",)),
    (RoundTripError, CheckError, CheckError, _ROUND_TRIP),
    (CheckConfigError, CheckError, CheckError, _ROUND_TRIP),
]

#: Defined in dpslice.distributed.errors: their constructors take the round trip's own types.
ROUND_TRIP_RICH: list[type[Exception]] = [
    RoundTripTimeoutError,
    RankFailedError,
    GatherMismatchError,
    TargetAbortedError,
]

ROWS = (
    [
        pytest.param(error, parent, root, homes, id=error.__name__)
        for error, parent, root, homes in TABLE
    ]
    + [
        pytest.param(error, RoundTripError, CheckError, ("dpslice.distributed",), id=error.__name__)
        for error in ROUND_TRIP_RICH[:-1]
    ]
    + [
        # The target's fault: a verdict the round trip reports, not a harness failure.
        pytest.param(
            TargetAbortedError,
            Exception,
            TargetAbortedError,
            ("dpslice.distributed",),
            id="TargetAbortedError",
        )
    ]
)


def test_the_table_holds_every_public_exception() -> None:
    assert sorted(error.__name__ for error, *_ in TABLE) == sorted(dpslice.errors.__all__)
    defined = {
        name
        for name, value in vars(dpslice.errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and not name.startswith("_")
    }
    assert defined == set(dpslice.errors.__all__)
    rich = {
        name
        for name, value in vars(sys.modules["dpslice.distributed.errors"]).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == "dpslice.distributed.errors"
    }
    assert rich == {error.__name__ for error in ROUND_TRIP_RICH}


@pytest.mark.parametrize(("error", "parent", "root", "homes"), ROWS)
def test_one_parent_and_one_root(
    error: type[Exception], parent: type[Exception], root: type[Exception], homes: tuple[str, ...]
) -> None:
    assert error.__bases__ == (parent,)
    assert [candidate for candidate in ROOTS if issubclass(error, candidate)] == [root]
    assert issubclass(error, ROOTS[root])


@pytest.mark.parametrize(("error", "parent", "root", "homes"), ROWS)
def test_re_exported_where_users_import_it(
    error: type[Exception], parent: type[Exception], root: type[Exception], homes: tuple[str, ...]
) -> None:
    for home in homes:
        module = importlib.import_module(home)
        assert getattr(module, error.__name__) is error, home
        assert error.__name__ in module.__all__, home


@pytest.mark.parametrize(("error", "parent", "root", "homes"), ROWS)
def test_says_what_was_wrong(
    error: type[Exception], parent: type[Exception], root: type[Exception], homes: tuple[str, ...]
) -> None:
    assert (error.__doc__ or "").strip()
    expected = "dpslice.distributed.errors" if error in ROUND_TRIP_RICH else "dpslice.errors"
    assert error.__module__ == expected  # tracebacks name the module that defines it


@pytest.mark.parametrize(
    "error",
    [error for error, *_ in TABLE if error is not ImplicitSyncError],
    ids=lambda error: error.__name__,
)
def test_crosses_a_process_boundary(error: type[Exception]) -> None:
    """The check's worker pickles what it raises to its parent."""
    copy = pickle.loads(pickle.dumps(error("what went wrong")))
    assert type(copy) is error
    assert str(copy) == "what went wrong"


def test_the_roots_sit_under_the_builtin_that_fits() -> None:
    assert issubclass(InvalidInputError, ValueError)
    assert not issubclass(SyncError, ValueError)  # a sync is not a value error
    assert issubclass(SyncError, RuntimeError)  # like torch's own sync debug mode's error
    assert not issubclass(CheckError, (ValueError, RuntimeError))
    assert not issubclass(TargetAbortedError, CheckError)  # the target's fault, not the check's


def test_a_malformed_contract_is_not_a_slice_input_error() -> None:
    """It concerns how a check is set up: ``except InvalidInputError`` must not swallow it."""
    assert not issubclass(InvalidContractError, InvalidInputError)


def test_the_module_imports_nothing_of_dpslice() -> None:
    """dpslice.errors is the bottom layer: every other module may raise its errors."""
    tree = ast.parse(Path(dpslice.errors.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
    assert not [name for name in imported if name.split(".")[0] == "dpslice"]
