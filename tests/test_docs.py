"""The documents themselves: README.md, docs/*.md and the run logs in docs/data/.

Their examples run as tests through Sybil (``tests/doc_examples.py``); these
tests check what no example run can: the text holds no path of one machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: README.md, docs/*.md and the text files under docs/data/ (logs, JSON).
DOCUMENTS = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(p for p in (ROOT / "docs" / "data").rglob("*") if p.suffix in {".log", ".json", ".md"}),
    ]
)

#: An absolute path that belongs to one machine: a home or work folder, a
#: temporary file, an installed package's folder.  Neutral placeholders
#: (``/path/to/...``, ``$OUT/...``, ``<tmpdir>/...``) and repository-relative
#: paths are what the documents use instead.
MACHINE_PATH = re.compile(
    r"""
    (?<![\w.~$])                     # a path's first slash, not the middle of a word
    (?:
        /(?:work|root|workspace|scratch|mnt|srv|nfs|lustre)/
      | /home/[^/\s]+/
      | /Users/[^/\s]+/
      | /private/
      | /tmp/\S                      # /tmp/obo.py, /tmp/tmp.XXXX, /tmp/pytest-of-...
      | /var/folders/
      | /(?:usr|opt)/\S*?(?:site|dist)-packages
      | /opt/conda/
    )
    | [A-Za-z]:\\Users\\             # C:\Users\...
    """,
    re.VERBOSE,
)


def machine_paths(text: str) -> list[str]:
    """Each ``line N: text`` of ``text`` that names a machine's absolute path."""
    return [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), start=1)
        if MACHINE_PATH.search(line)
    ]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_document_names_no_path_of_one_machine(path: Path) -> None:
    found = machine_paths(path.read_text(encoding="utf-8"))
    assert not found, (
        f"{path.relative_to(ROOT)} names absolute paths of one machine; use a path relative "
        "to the repository or a placeholder (/path/to/..., $OUT/...):\n  " + "\n  ".join(found)
    )


@pytest.mark.parametrize(
    "line",
    [
        "python3 -m venv /work/vllm-env/venv",
        "Saved benchmark data in: /work/main/.benchmarks/x.json",
        "--json /root/out/ref_cuda.json",
        "dpslice check /tmp/obo.py:dp_local_slice",
        "dpslice check /tmp/tmp.jI6W3uhPHd/reference.py:f",
        "at /tmp/pytest-of-alice/pytest-3/test_x0/impl.py:3",
        "File /home/alice/project/impl.py",
        "/usr/lib/python3/dist-packages/torch/__init__.py",
        "/opt/venv/lib/python3.11/site-packages/torch/cuda/__init__.py",
        "C:\\Users\\alice\\impl.py",
    ],
)
def test_the_pattern_finds_a_machines_paths(line: str) -> None:
    assert machine_paths(line)


@pytest.mark.parametrize(
    "line",
    [
        "dpslice check tests/distributed_targets.py:f",
        "dpslice check /path/to/dpslice/tests/distributed_targets.py:f",
        "--json $OUT/ref_cuda.json",
        "dpslice check <tmpdir>/reference.py:dp_local_slice",
        "python3 -m venv ~/vllm-env && ~/vllm-env/bin/pip install torch",
        "at dpslice/check/calls.py:45",
        "tests/cuda/run_on_gpu.sh writes under ${OUT:-gpu-results}",
        "a 2-D length, r0[pad] r1[0], 64 MiB/s",
    ],
)
def test_the_pattern_leaves_relative_paths_and_placeholders(line: str) -> None:
    assert not machine_paths(line)
