"""The exception tree: one parent and one root each, and one import path per class."""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import pkgutil
import re
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

#: Every public exception: its one parent and its root.
TABLE: list[tuple[type[Exception], type[Exception], type[Exception]]] = [
    (InvalidInputError, ValueError, InvalidInputError),
    (CountsUnavailableError, InvalidInputError, InvalidInputError),
    (InvalidGraphExtentError, InvalidInputError, InvalidInputError),
    (CountExceedsExtentError, InvalidInputError, InvalidInputError),
    (CountsLengthError, InvalidInputError, InvalidInputError),
    (RankOutOfRangeError, InvalidInputError, InvalidInputError),
    (InvalidDPSizeError, InvalidInputError, InvalidInputError),
    (NegativeCountError, InvalidInputError, InvalidInputError),
    (NonIntegerError, InvalidInputError, InvalidInputError),
    (TensorInputError, InvalidInputError, InvalidInputError),
    (InvalidLayoutError, InvalidInputError, InvalidInputError),
    (CountsDisagreementError, InvalidInputError, InvalidInputError),
    (SyncError, RuntimeError, SyncError),
    (ImplicitSyncError, SyncError, SyncError),
    (SyncModeUnavailableError, SyncError, SyncError),
    (CheckError, Exception, CheckError),
    (BadTargetError, CheckError, CheckError),
    (DeviceError, CheckError, CheckError),
    (UnknownPropertyError, CheckError, CheckError),
    (InvalidContractError, CheckError, CheckError),
    (CheckBrokeError, CheckError, CheckError),
    (RoundTripError, CheckError, CheckError),
    (CheckConfigError, CheckError, CheckError),
]

#: Defined in dpslice.distributed.errors: their constructors take the round trip's own types.
ROUND_TRIP_RICH: list[type[Exception]] = [
    RoundTripTimeoutError,
    RankFailedError,
    GatherMismatchError,
    TargetAbortedError,
]

ROWS = (
    [pytest.param(error, parent, root, id=error.__name__) for error, parent, root in TABLE]
    + [
        pytest.param(error, RoundTripError, CheckError, id=error.__name__)
        for error in ROUND_TRIP_RICH[:-1]
    ]
    + [
        # The target's fault: a verdict the round trip reports, not a harness failure.
        pytest.param(TargetAbortedError, Exception, TargetAbortedError, id="TargetAbortedError")
    ]
)

#: The one module each exception is imported from: the module that defines it.
HOME = {
    **{error: "dpslice.errors" for error, *_ in TABLE},
    **dict.fromkeys(ROUND_TRIP_RICH, "dpslice.distributed.errors"),
}

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize(("error", "parent", "root"), ROWS)
def test_one_parent_and_one_root(
    error: type[Exception], parent: type[Exception], root: type[Exception]
) -> None:
    assert error.__bases__ == (parent,)
    assert [candidate for candidate in ROOTS if issubclass(error, candidate)] == [root]
    assert issubclass(error, ROOTS[root])


def _modules() -> list[str]:
    """Every module of dpslice but the engine adapters (they need an engine installed)."""
    return [
        info.name
        for info in pkgutil.walk_packages(dpslice.__path__, "dpslice.")
        if not info.name.startswith("dpslice.engines.") and info.name != "dpslice.__main__"
    ]


def test_one_import_path_per_class() -> None:
    """Each exception is exported by the module that defines it, and by no other."""
    exporters: dict[type[Exception], list[str]] = {error: [] for error in HOME}
    for name in _modules():
        module = importlib.import_module(name)
        for error in HOME:
            if error.__name__ in getattr(module, "__all__", ()):
                exporters[error].append(name)
    assert exporters == {error: [home] for error, home in HOME.items()}
    for error, home in HOME.items():
        assert error.__module__ == home  # tracebacks name the module to import it from


_NAMED = re.compile(r"\b(dpslice(?:\.\w+)*)\.(\w+Error)\b")
_IMPORTED = re.compile(r"from (dpslice(?:\.\w+)*) import ([\w, ]+)")


def test_the_docs_name_each_error_at_its_home() -> None:
    homes = {error.__name__: home for error, home in HOME.items()}
    wrong = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        named = [(m[1], m[2]) for m in _NAMED.finditer(text)]
        for m in _IMPORTED.finditer(text):
            named += [(m[1], name.strip()) for name in m[2].split(",")]
        wrong += [
            f"{path.name}: {module}.{name}"
            for module, name in named
            if name in homes and module != homes[name]
        ]
    assert not wrong, "import these from their home module instead:\n  " + "\n  ".join(wrong)


@pytest.mark.parametrize(("error", "parent", "root"), ROWS)
def test_says_what_was_wrong(
    error: type[Exception], parent: type[Exception], root: type[Exception]
) -> None:
    assert (error.__doc__ or "").strip()


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
