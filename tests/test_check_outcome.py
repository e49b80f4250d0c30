"""Where a call's error is located: the innermost frame of the code under check.

The code under check is the target and whatever it calls that is neither the
standard library, torch, NumPy, Hypothesis nor dpslice's own check: an
engine the target wraps included, installed or not.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dpslice.check.outcome import OutcomeKind, call_target
from dpslice.check.target import load_target

#: The line of ``local_slice`` in the fake engine that subscripts the counts.
ENGINE_LINE = 3


@pytest.fixture
def installed_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package ``fake_engine`` in a site-packages directory of its own, importable."""
    packages = tmp_path / "site-packages"
    engine = packages / "fake_engine"
    engine.mkdir(parents=True)
    (engine / "__init__.py").write_text("")
    (engine / "slicing.py").write_text(
        "def local_slice(counts, rank):\n"
        "    start = sum(counts[:rank]) if counts is not None else 0\n"
        "    return start, counts[rank]\n"
    )
    monkeypatch.syspath_prepend(str(packages))  # as an installed package's directory is


def wrapper(tmp_path: Path, body: str) -> str:
    """A target file ``wrapper.py`` whose ``f`` runs ``body``; its spec."""
    path = tmp_path / "wrapper.py"
    path.write_text(
        "import textwrap\n"
        "from fake_engine.slicing import local_slice\n"
        "\n"
        "def f(*, global_num_tokens_cpu, dp_rank):\n"
        f"    {body}\n"
    )
    return f"{path}:f"


#: The line of ``body`` in ``wrapper.py``.
WRAPPER_LINE = 5


@pytest.mark.usefixtures("installed_engine")
def test_a_crash_in_an_installed_engine_is_located_in_the_engine(tmp_path: Path) -> None:
    spec = wrapper(tmp_path, "return local_slice(global_num_tokens_cpu, dp_rank)")
    outcome = call_target(load_target(spec), {"global_num_tokens_cpu": None, "dp_rank": 0})
    assert (outcome.kind, outcome.error) == (OutcomeKind.INCIDENTAL, "TypeError")
    assert outcome.location is not None
    assert outcome.location.endswith(f"fake_engine/slicing.py:{ENGINE_LINE}")


@pytest.mark.usefixtures("installed_engine")
@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param("return global_num_tokens_cpu[dp_rank], 0", "TypeError", id="an-operation"),
        pytest.param("return textwrap.dedent(None), 0", "TypeError", id="the-standard-library"),
        pytest.param(
            "from dpslice.reference import dp_local_slice\n"
            "    return dp_local_slice(None, dp_rank, dp_size=1)",
            "CountsUnavailableError",
            id="dpslice",
        ),
    ],
)
def test_an_error_raised_outside_the_code_under_check_is_located_in_the_target(
    tmp_path: Path, body: str, error: str
) -> None:
    spec = wrapper(tmp_path, body)
    outcome = call_target(load_target(spec), {"global_num_tokens_cpu": None, "dp_rank": 0})
    assert outcome.error == error
    assert outcome.location is not None
    line = WRAPPER_LINE + textwrap.dedent(body).count("\n")
    assert outcome.location.endswith(f"wrapper.py:{line}")
