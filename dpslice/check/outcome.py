"""Call a target once and classify what happened (:class:`OutcomeKind`).

An error is deliberate when a ``raise X`` statement in the code under check raised it;
incidental when an operation, the standard library, torch or NumPy raised it, and always
for :data:`NEVER_REFUSALS` (docs/check-reference.md).
"""

from __future__ import annotations

import dis
import enum
import functools
import operator
import os
import site
import sys
import sysconfig
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import CodeType
from typing import TYPE_CHECKING, TypeGuard

from dpslice.check.target import Target

if TYPE_CHECKING:
    import torch


#: The most characters of a message or repr of the target's that a report carries.
MAX_TEXT = 10_000

#: Errors that mean the code fell over, even when a ``raise`` statement raised them.
NEVER_REFUSALS: tuple[type[BaseException], ...] = (
    AssertionError,
    ImportError,
    MemoryError,
    NameError,
    RecursionError,
    SystemError,
)

_THIS_FILE = os.path.abspath(__file__)
_ABSENT = object()

#: Packages that perform operations for the target and never decide for it.
_OPERATIONS = ("torch", "numpy")
#: The check's own packages: they call the target, and are never code under check.
_THE_CHECK = ("hypothesis", "dpslice")


class OutcomeKind(enum.Enum):
    """Returned a slice; returned something else; refused deliberately; crashed."""

    RETURNED = "returned"
    MALFORMED = "malformed"
    DELIBERATE = "deliberate"
    INCIDENTAL = "incidental"


@dataclass(frozen=True)
class Outcome:
    """What one call of the target did: ``slice`` and ``bounds`` (as returned) when it returned
    a slice; ``value`` (a repr) when it returned anything, ``problem`` why that is malformed;
    ``error``, ``message`` and ``location`` when it raised."""

    kind: OutcomeKind
    slice: tuple[int, int] | None = None
    value: str | None = None
    problem: str | None = None
    error: str | None = None
    message: str | None = None
    location: str | None = None
    bounds: tuple[object, object] | None = field(default=None, repr=False, compare=False)

    @property
    def raised(self) -> bool:
        return self.kind in (OutcomeKind.DELIBERATE, OutcomeKind.INCIDENTAL)

    def describe(self) -> str:
        """One line: ``returned (2, 1)``, ``crashed with incidental TypeError: ... at f.py:3``."""
        if self.kind is OutcomeKind.RETURNED:
            assert self.slice is not None
            return f"returned {self.slice}"
        if self.kind is OutcomeKind.MALFORMED:
            return f"returned {self.value}, not a slice: {self.problem}"
        deliberate = self.kind is OutcomeKind.DELIBERATE
        verb = "raised deliberate" if deliberate else "crashed with incidental"
        message = f": {self.message}" if self.message else ""
        return f"{verb} {self.error}{message} at {self.location}"


def _package_dirs(packages: tuple[str, ...]) -> list[str]:
    """The directories of those of ``packages`` that are imported."""
    locations = (getattr(sys.modules.get(package), "__file__", None) for package in packages)
    return [os.path.dirname(os.path.abspath(location)) for location in locations if location]


def _under(path: str, directories: Iterable[str]) -> bool:
    return any(path.startswith(directory + os.sep) for directory in directories)


def _in_library(filename: str) -> bool:
    """Whether ``filename`` is torch's, NumPy's or the standard library's; an installed
    package is code under check, even inside the standard library's directory."""
    if filename.startswith("<frozen"):
        return True
    path, paths = os.path.abspath(filename), sysconfig.get_paths()
    stdlib = [os.path.abspath(paths[key]) for key in ("stdlib", "platstdlib")]
    installed = [os.path.abspath(paths[key]) for key in ("purelib", "platlib")]
    installed += map(os.path.abspath, site.getsitepackages())
    library = _under(path, stdlib) and not _under(path, installed)
    return library or _under(path, _package_dirs(_OPERATIONS))


@functools.lru_cache(maxsize=1024)
def _is_raise_statement(code: CodeType, offset: int) -> bool:
    """Whether the instruction at ``offset`` is ``raise X`` (not a bare re-raise)."""
    for instruction in dis.get_instructions(code):
        if instruction.offset == offset:
            return instruction.opname == "RAISE_VARARGS" and bool(instruction.arg)
    return False


def is_incidental(exc: BaseException) -> bool:
    """Whether ``exc`` is an accident rather than a refusal (one never raised is)."""
    if isinstance(exc, NEVER_REFUSALS):
        return True
    innermost = exc.__traceback__
    while innermost is not None and innermost.tb_next is not None:
        innermost = innermost.tb_next
    if innermost is None:
        return True
    code = innermost.tb_frame.f_code
    return _in_library(code.co_filename) or not _is_raise_statement(code, innermost.tb_lasti)


def bounded(text: str, slack: int = 0) -> str:
    """``text`` cut to :data:`MAX_TEXT` characters, with a note of how many more there
    were, if it is longer than that plus ``slack``."""
    if len(text) <= MAX_TEXT + slack:
        return text
    return f"{text[:MAX_TEXT]}... ({len(text) - MAX_TEXT:,} more characters)"


def safe_repr(value: object) -> str:
    """``repr(value)``, bounded; a placeholder when the target's ``__repr__`` raises."""
    try:
        return bounded(repr(value))
    except Exception as exc:
        return f"<{type(value).__name__}; its repr raised {type(exc).__name__}>"


def exception_text(exc: BaseException) -> str:
    """``str(exc)`` on one line, bounded, however broken its ``__str__``."""
    try:
        text = str(exc)
    except Exception as broken:
        return f"<its str() raised {type(broken).__name__}>"
    return bounded(" ".join(text.split()))


def _raised(exc: Exception) -> str:
    message = exception_text(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def is_tensor(value: object) -> TypeGuard[torch.Tensor]:
    """Whether ``value`` is a torch tensor, without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _bound(value: object, what: str) -> int | str:
    """``value`` as an int, or why it is not a slice bound (what reading it raises too)."""
    try:
        if isinstance(value, bool):
            return f"{what} is the bool {value!r}"
        if is_tensor(value):
            import torch  # loaded already, since value is a tensor

            if value.dim() != 0:
                return f"{what} is a tensor of shape {tuple(value.shape)}, not a 0-dim tensor"
            dtype = value.dtype
            if dtype == torch.bool or dtype.is_floating_point or dtype.is_complex:
                return f"{what} is a 0-dim {dtype} tensor, not an integer one"
            return int(value.item())
        if isinstance(value, float):
            return f"{what} is the float {value!r}"
        try:
            return operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            return f"{what} is {type(value).__name__} {value!r}, not an int"
    except Exception as exc:
        return f"reading {what} raised {_raised(exc)}"


def _parts(result: object) -> tuple[object, object] | str:
    """``result``'s start and length as returned, unread, or why it has none."""
    try:  # a .start property, or a tuple subclass's indexing, is the target's code
        parts = (getattr(result, "start", _ABSENT), getattr(result, "length", _ABSENT))
        if parts[0] is not _ABSENT and parts[1] is not _ABSENT:
            return parts
        if isinstance(result, tuple) and len(result) == 2:
            return (result[0], result[1])
    except Exception as exc:
        return f"reading its start and length raised {_raised(exc)}"
    return f"a {type(result).__name__}; return (start, length) or an object with .start and .length"


def short_path(path: str) -> str:
    """``path`` relative to the working directory, unless it lies outside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def error_location(exc: BaseException, target: Target) -> str | None:
    """``file:line`` of the innermost frame in the target's file or outside the standard
    library, torch, NumPy and the check, else below the check's call; ``None`` if none."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if os.path.abspath(frame.filename) != _THIS_FILE
    ]
    check = _package_dirs(_THE_CHECK)
    under_check = [
        frame
        for frame in frames
        if os.path.abspath(frame.filename) == target.source_file
        or not (_in_library(frame.filename) or _under(os.path.abspath(frame.filename), check))
    ]
    chosen = under_check or frames
    return f"{short_path(chosen[-1].filename)}:{chosen[-1].lineno}" if chosen else None


def error_outcome(exc: Exception, target: Target) -> Outcome:
    """The outcome of a call of ``target`` that raised ``exc``."""
    kind = OutcomeKind.INCIDENTAL if is_incidental(exc) else OutcomeKind.DELIBERATE
    return Outcome(
        kind=kind,
        error=type(exc).__name__,
        message=exception_text(exc),
        location=error_location(exc, target) or "<unknown>",
    )


def result_outcome(result: object) -> Outcome:
    """The outcome of a call that returned ``result``; it reads tensor bounds on the host
    (a sync on CUDA): call it outside any sync guard."""
    value = safe_repr(result)
    parts = _parts(result)
    if isinstance(parts, str):
        return Outcome(kind=OutcomeKind.MALFORMED, value=value, problem=parts)
    start, length = _bound(parts[0], "start"), _bound(parts[1], "length")
    if isinstance(start, int) and isinstance(length, int):
        return Outcome(kind=OutcomeKind.RETURNED, slice=(start, length), value=value, bounds=parts)
    problem = start if isinstance(start, str) else str(length)
    return Outcome(kind=OutcomeKind.MALFORMED, value=value, problem=problem)


@functools.cache
def _home() -> tuple[str, int]:
    """The check's working directory, held open: a target that moves away is moved back."""
    path = os.getcwd()
    return path, os.open(path, os.O_RDONLY)


def call_target(target: Target, arguments: Mapping[str, object]) -> Outcome:
    """Call ``target`` with ``arguments`` as keywords and classify the outcome; a
    ``BaseException`` that is no ``Exception`` propagates.  The working directory is restored."""
    home, fd = _home()
    try:
        try:
            result = target.function(**arguments)
        finally:
            try:
                moved = os.getcwd() != home
            except OSError:  # the directory the call moved to is gone
                moved = True
            if moved:
                os.fchdir(fd)
    except Exception as exc:
        return error_outcome(exc, target)
    return result_outcome(result)
