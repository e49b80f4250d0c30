"""Seeded bugs: the reference with one mutation each must FAIL the property that guards it.

Each mutant is ``dpslice/reference.py`` copied into ``tmp_path`` with one bug
put in by text substitution, then checked as ``path/to/reference.py:dp_local_slice``.
Every substitution must apply (the test says which one no longer does if the
reference changes), and applies everywhere its pattern occurs in the code, so
a fast path and the validating path carry the same bug.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import dpslice.reference
from dpslice.check import Verdict, run_check
from dpslice.check.outcome import OutcomeKind
from dpslice.cli import main


@dataclass(frozen=True)
class Mutation:
    """A bug, as regex substitutions over the reference's code (not its module docstring)."""

    substitutions: tuple[tuple[str, str], ...]
    caught_by: str
    why: str  # a fragment of the counterexample's outcome or explanation
    #: FAIL for a hazard; WARN for an input no engine produces (hardening).
    verdict: Verdict = Verdict.FAIL


def _body_start(statement: str) -> tuple[str, str]:
    """Insert ``statement`` as the first line of ``dp_local_slice``'s body."""
    docstring = r'(def dp_local_slice\(.*?\n    """.*?"""\n)'
    return docstring, r"\1    " + statement.replace("\\", "\\\\") + "\n"


_EXTRA_PARAMETER = (
    r"(def dp_local_slice\([^)]*?graph_extent: int \| None = None,\n)(\) -> DPSlice:)",
    r"\1    cuda_graph_batch: int | None = None,\n\2",
)

MUTATIONS = {
    "prefix-sum-off-by-one": Mutation(
        ((r"sum\(counts\[:slot\]\)", "sum(counts[: slot + 1])"),),
        caught_by="sum_len_rows",
        why="run outside the 1-row buffer",
    ),
    "graph-mode-ignored": Mutation(
        ((r"slot \* (?:graph_)?extent\b", "sum(counts[:slot])"),),
        caught_by="graph_replay_rows",
        why="does not own",
    ),
    # Upstream's bug: the start is rank * bs, the graph's request count, while the
    # extent (and so the validation) stays bs * num_tokens_per_bs.  A module global
    # carries bs to the validating path, which is not given it.
    "graph-start-from-request-count": Mutation(
        (
            _EXTRA_PARAMETER,
            _body_start("global _REQUEST_COUNT; _REQUEST_COUNT = cuda_graph_batch"),
            (r"slot \* (?:graph_)?extent\b", "slot * _REQUEST_COUNT"),
        ),
        caught_by="graph_replay_rows",
        why="does not own",
    ),
    "none-counts-as-zeros": Mutation(
        (
            _body_start(
                "global_num_tokens_cpu = [0] * dp_size "
                "if global_num_tokens_cpu is None else global_num_tokens_cpu"
            ),
        ),
        caught_by="capture_phase_explicit",
        why="the slice returned is not the rank's",
    ),
    "count-over-extent-accepted": Mutation(
        ((r"if count > extent:", "if False:"),),
        caught_by="invalid_inputs_refused",
        why="over the extent) and it silently returned a result",
        # Every count fits the extent of the graph that replays the batch.
        verdict=Verdict.WARN,
    ),
    "one-entry-list-indexed-by-rank": Mutation(
        ((r"slot = (?:dp_rank if width == dp_size else )?0\b", "slot = dp_rank"),),
        caught_by="skipped_gather_rows",
        why="IndexError",
    ),
    "tensor-read-with-int": Mutation(
        (
            (
                r"(\n    if _is_tensor_like\(value\):\n        raise TensorInputError\()",
                r"\n    if _is_tensor_like(value) and value.dim() == 0:\n"
                r"        return int(value)\1",
            ),
        ),
        caught_by="invalid_inputs_refused",
        why="a tensor as",
        # sglang's capturer is handed Python ints; a tensor is another caller's mistake.
        verdict=Verdict.WARN,
    ),
}


def mutant(tmp_path: Path, name: str) -> str:
    source = Path(dpslice.reference.__file__).read_text()
    docstring_end = source.index('"""', 3) + 3
    head, code = source[:docstring_end], source[docstring_end:]
    for pattern, replacement in MUTATIONS[name].substitutions:
        code, applied = re.subn(pattern, replacement, code, flags=re.DOTALL)
        assert applied, f"mutation {name!r}: {pattern!r} no longer occurs in reference.py"
    path = tmp_path / "reference.py"
    path.write_text(head + code)
    return f"{path}:dp_local_slice"


@pytest.mark.parametrize("name", MUTATIONS)
def test_each_seeded_bug_fails_the_property_that_guards_it(tmp_path: Path, name: str) -> None:
    mutation = MUTATIONS[name]
    report = run_check(
        mutant(tmp_path, name), max_examples=200, seed=0, properties=[mutation.caught_by]
    )
    result = report.result(mutation.caught_by)
    assert result.verdict is mutation.verdict, f"{name} survived {mutation.caught_by}"
    described = [f"{ce.outcome.describe()} / {ce.why}" for ce in result.counterexamples]
    assert any(mutation.why in text for text in described), described


def test_the_unmutated_copy_passes(tmp_path: Path) -> None:
    """The copy itself is sound: the mutations, not the copying, make the mutants fail."""
    path = tmp_path / "reference.py"
    path.write_text(Path(dpslice.reference.__file__).read_text())
    properties = sorted({mutation.caught_by for mutation in MUTATIONS.values()})
    report = run_check(f"{path}:dp_local_slice", max_examples=50, seed=0, properties=properties)
    assert report.passed


def test_a_mutant_crash_is_located_in_the_mutant(tmp_path: Path) -> None:
    report = run_check(
        mutant(tmp_path, "one-entry-list-indexed-by-rank"),
        max_examples=50,
        seed=0,
        properties=["skipped_gather_rows"],
    )
    counterexample = report.result("skipped_gather_rows").counterexample
    assert counterexample is not None
    assert counterexample.outcome.kind is OutcomeKind.INCIDENTAL
    assert counterexample.outcome.location is not None
    assert str(tmp_path / "reference.py") in str(
        Path(counterexample.outcome.location.rsplit(":", 1)[0]).resolve()
    )


@pytest.mark.slow  # through gloo: tests/test_distributed.py shrinks this bug in the default run
def test_the_off_by_one_mutant_fails_the_round_trip_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dpslice check --distributed 2``: real gloo gathers, a shrunk layout and its rank."""
    report = tmp_path / "round_trip.json"
    spec = mutant(tmp_path, "prefix-sum-off-by-one")
    args = ["check", spec, "--distributed", "2", "--max-examples", "100", "--seed", "0"]
    assert main([*args, "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert "\n  layout     DPLayout(counts=(0, 1))\n  rank       1\n" in out
    assert f"\n  reproduce  dpslice check {spec} --distributed 2 --backend gloo --seed 0" in out
    assert out.endswith("\nFAILED\n")
    (prop,) = json.loads(report.read_text())["properties"]
    (found,) = prop["counterexamples"]
    assert (found["layout"], found["rank"]) == ("DPLayout(counts=(0, 1))", 1)
    assert found["outcome"]["slice"] == [1, 1]
    assert found["expected"]["slice"] == [0, 1]
    assert found["why"] == "rows [1, 2) run outside the 1-row buffer"
