"""Without sglang, naming an sglang adapter is a usage error with one line that says
how to install the engine: exit status 2, no traceback.  Runs with or without sglang:
a package that fails to import as sglang does when it is absent shadows any
installed one, in the check's own processes too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_ABSENT = 'raise ModuleNotFoundError("No module named \'sglang\'", name="sglang")\n'


def test_check_without_sglang_exits_2_with_one_line_that_says_how_to_install(
    tmp_path: Path,
) -> None:
    (tmp_path / "sglang").mkdir()
    (tmp_path / "sglang" / "__init__.py").write_text(_ABSENT)
    path = [str(tmp_path), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    child = subprocess.run(
        # One worker (-j 1): the error comes from the first that loads the target.
        [
            sys.executable,
            "-m",
            "dpslice",
            "check",
            "-j",
            "1",
            "dpslice.engines.sglang:get_dp_local_slice_cpu",
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 2, child.stderr
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1, child.stderr
    assert lines[0].startswith("dpslice: error:")
    assert "sglang, which is not installed" in lines[0]
    assert "tox -e sglang" in lines[0]
    assert "requirements/sglang-engine.txt" in lines[0]
    assert "Traceback" not in child.stderr
