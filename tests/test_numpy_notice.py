"""``dpslice check`` where NumPy is not installed prints no torch notice about it.

A plain ``pip install dpslice`` brings torch without NumPy, and torch then
warns "Failed to initialize NumPy" whenever it is imported: in the command's
own process, in its worker and in the round trip's ranks.  dpslice never uses
NumPy.  Here NumPy is made unimportable for every process of the run by a
``numpy`` module on ``PYTHONPATH`` that refuses to import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpslice._numpy_notice import NUMPY_NOTICE


def without_numpy(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "no_numpy"
    blocker.mkdir()
    (blocker / "numpy.py").write_text('raise ModuleNotFoundError("No module named numpy")\n')
    path = os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")]))
    # An in-process dpslice.cli.main() earlier in the session leaves its filter here.
    inherited = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    return {**inherited, "PYTHONPATH": path}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def torch_first(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """A process without NumPy that imports torch itself, then dpslice's modules; it
    prints whether the warning filters are as torch's import left them.  One process
    for two checks (each imports torch): that the blocker provokes torch's notice,
    and that importing dpslice changes no warning filter."""
    directory = tmp_path_factory.mktemp("torch_first")
    program = (
        "import torch, warnings; before = list(warnings.filters);"
        " import dpslice, dpslice.sync, dpslice.check; print(warnings.filters == before)"
    )
    return run(["-c", program], without_numpy(directory), directory)


def test_dpslice_check_prints_no_numpy_notice_where_numpy_is_missing(
    tmp_path: Path, torch_first: subprocess.CompletedProcess[str]
) -> None:
    assert NUMPY_NOTICE in torch_first.stderr, "the blocker no longer provokes torch's notice"
    # One worker (-j 1): each worker imports torch the same way.
    check = ["-m", "dpslice", "check", "--property", "sum_len_rows", "--max-examples", "5"]
    result = run([*check, "--seed", "1", "-j", "1"], without_numpy(tmp_path), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert NUMPY_NOTICE not in result.stderr, result.stderr


def test_importing_dpslice_leaves_the_warning_filters_alone(
    torch_first: subprocess.CompletedProcess[str],
) -> None:
    assert torch_first.stdout.strip() == "True", torch_first.stderr


@pytest.mark.slow  # the way in that every module takes: the command above takes it too
def test_dpslice_modules_can_import_torch_without_the_notice(tmp_path: Path) -> None:
    """``from dpslice._numpy_notice import torch``: how dpslice's modules import torch."""
    program = (
        "import sys, warnings\n"
        "before = list(warnings.filters)\n"
        "import dpslice._numpy_notice\n"
        "assert 'torch' not in sys.modules, 'importing the module alone must not import torch'\n"
        "from dpslice._numpy_notice import torch\n"
        "assert torch is sys.modules['torch']\n"
        "assert warnings.filters == before, 'the warning filters changed'\n"
        "torch.tensor([1, 2]).sum()\n"
    )
    result = run(["-c", program], without_numpy(tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert NUMPY_NOTICE not in result.stderr, result.stderr


@pytest.mark.slow  # a process that imports torch each; the command's own is checked above
@pytest.mark.parametrize(
    "first_use",
    [
        "import dpslice.strategies",
        "import dpslice.sync",
        "from dpslice import DPLayout; DPLayout(counts=(1, 2)).gathered(0)",
        "from dpslice.pytest_plugin import cuda_available; cuda_available()",
        "import dpslice.specimens.tensor_path as t; t.get_dp_local_info",
        "import dpslice.distributed",
        "from dpslice.check import run_check; run_check(max_examples=1, properties=['sync_free'])",
    ],
)
def test_a_user_process_whose_first_torch_comes_from_dpslice_sees_no_notice(
    tmp_path: Path, first_use: str
) -> None:
    """A user's test run: whichever dpslice module imports torch first, no notice shows."""
    result = run(["-W", "default", "-c", first_use], without_numpy(tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert NUMPY_NOTICE not in result.stderr, result.stderr
