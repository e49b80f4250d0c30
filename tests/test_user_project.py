"""dpslice as a new user meets it: a project of their own, outside this repository.

The project gets its own virtual environment with dpslice installed from a copy
of this working tree (a plain, non-editable ``pip install``, as from a clone).
Its torch, Hypothesis, pytest and pytest-xdist are those of the environment
running this suite, reached through a ``.pth`` file so that no test downloads
them again; nothing of this repository is on its path, and it has no
``conftest.py``, so Hypothesis runs with its default settings and the plugin
comes in through its entry point only.

Every pytest run here is a fresh process: each documented test is the first
test of its session, as it is when a user pastes it into an empty project.

The whole module is ``slow`` (a virtual environment built and dpslice installed
from a copy, then a pytest process per test): CI's slow stage runs it; the
README's test command checks the same plugin in this process
(``tests/test_pytest_plugin.py``) and the documents' examples through Sybil.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from dpslice.check.registry import registered
from tests.targets.sources import MINIMAL_CAPTURER

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

CORRECT = MINIMAL_CAPTURER

#: The same with its prefix sum off by one for every rank but the first.
OFF_BY_ONE = CORRECT.replace("sum(counts[:slot])", "sum(counts[:slot]) + (slot > 0)")

_PYTHON_BLOCK = re.compile(r"^```python\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)
_DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


class Project:
    """A user's project directory and the Python of its virtual environment."""

    def __init__(self, path: Path, python: Path) -> None:
        self.path = path
        self.python = python

    def pytest(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("HYPOTHESIS_", "PYTEST_", "PYTHON", "COV_"))
        }
        return subprocess.run(
            [str(self.python), "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _working_tree_copy(destination: Path) -> Path:
    """The files of this working tree that git tracks or would track: what a clone holds."""
    names = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, names):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout of dpslice to copy")
    base = tmp_path_factory.mktemp("user-project")
    clone = _working_tree_copy(base / "dpslice-clone")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "suite-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            str(clone),
        ],
        check=True,
    )
    path = base / "project"
    path.mkdir()
    located = subprocess.run(
        [str(python), "-c", "import dpslice; print(dpslice.__file__)"],
        cwd=path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(located).is_relative_to(venv), f"dpslice imported from {located}, not the venv"
    return Project(path, python)


def _testcases(report: Path) -> dict[str, ElementTree.Element]:
    root = ElementTree.parse(report).getroot()
    return {case.attrib["name"]: case for case in root.iter("testcase")}


class TestTheBatteryInAUsersSuite:
    def test_a_correct_slice_passes_one_testcase_per_property(self, project: Project) -> None:
        (project.path / "my_slice.py").write_text(CORRECT)
        result = project.pytest(
            "--dpslice-target", "my_slice.py:local_slice", "--dpslice-max-examples", "50",
            "-n", "2", "--junitxml", "correct.xml",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        cases = _testcases(project.path / "correct.xml")
        assert sorted(cases) == sorted(prop.name for prop in registered())
        assert not [name for name, case in cases.items() if case.find("failure") is not None]
        assert "HardeningWarning: WARN invalid_inputs_refused" in result.stdout

    def test_an_off_by_one_fails_with_its_counterexample_in_the_xml(self, project: Project) -> None:
        (project.path / "off_by_one.py").write_text(OFF_BY_ONE)
        result = project.pytest(
            "--dpslice-target", "off_by_one.py:local_slice", "--dpslice-max-examples", "50",
            "--dpslice-seed", "7", "-n", "2", "--junitxml", "off_by_one.xml",
            "-k", "sum_len_rows or ranks_disjoint_in_bounds",
        )  # fmt: skip
        assert result.returncode == 1, result.stdout + result.stderr
        failure = _testcases(project.path / "off_by_one.xml")["sum_len_rows"].find("failure")
        assert failure is not None
        text = failure.text or ""
        for field in ("layout     DPLayout(counts=(0, 0))", "rank       1", "outcome    returned",
                      "expected   (0, 0)", "reproduce  dpslice check off_by_one.py:local_slice "
                      "--seed 7 --max-examples 50 --property sum_len_rows"):  # fmt: skip
            assert field in text, text

    def test_minus_k_runs_one_property(self, project: Project) -> None:
        (project.path / "my_slice.py").write_text(CORRECT)
        result = project.pytest(
            "--dpslice-target", "my_slice.py:local_slice", "--dpslice-max-examples", "50",
            "-k", "sync_free", "-q",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 passed, 13 deselected" in result.stdout

    def test_check_properties_in_a_test_module(self, project: Project) -> None:
        (project.path / "my_engine_slice.py").write_text(CORRECT)
        (project.path / "test_my_engine_slice.py").write_text(
            "from dpslice.pytest_plugin import check_properties\n\n"
            'test_local_slice = check_properties("my_engine_slice.py:local_slice", '
            "max_examples=50)\n"
        )
        result = project.pytest("test_my_engine_slice.py", "-k", "rows", "-q", "-rs")
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(r"\b5 passed, 1 skipped, 8 deselected\b", result.stdout), result.stdout


def _documented_tests() -> list[tuple[str, str]]:
    """Every Python block of README.md and docs/ that defines a test, by document and line."""
    found = []
    for document in _DOCUMENTS:
        text = document.read_text()
        for match in _PYTHON_BLOCK.finditer(text):
            code = match["code"]
            if re.search(r"^def test_|^    def test_|^test_\w+ = ", code, re.MULTILINE):
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{document.relative_to(ROOT)}:{line}", code))
    return found


_DOCUMENTED = _documented_tests()


@pytest.mark.parametrize(("where", "code"), _DOCUMENTED, ids=[where for where, _ in _DOCUMENTED])
def test_a_documented_test_passes_as_written(project: Project, where: str, code: str) -> None:
    """Pasted into the project as it stands, it passes under plain ``pytest``, first in its run."""
    (project.path / "my_engine_slice.py").write_text(CORRECT)
    name = "test_" + re.sub(r"\W", "_", where)
    (project.path / f"{name}.py").write_text(code)
    result = project.pytest(f"{name}.py", "-q")
    assert result.returncode == 0, f"{where}:\n{result.stdout}{result.stderr}"
    assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout
