"""Loading a target, the calling convention, and classifying what a call did."""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from dpslice import DPLayout, DPSlice, Mode
from dpslice.check import CONVENTION, load_target
from dpslice.check.outcome import OutcomeKind, call_target, is_incidental
from dpslice.check.target import check_spec, spec_source, target_from_callable
from dpslice.errors import BadTargetError
from tests.processes import run_fresh

REFERENCE_READS = {"global_num_tokens_cpu", "dp_rank", "dp_size", "can_run_graph", "graph_extent"}


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


class TestLoad:
    def test_module_function(self) -> None:
        target = load_target("dpslice.reference:dp_local_slice")
        assert target.accepts == REFERENCE_READS
        assert target.name == "dp_local_slice"
        assert target.source_file is not None
        assert target.source_file.endswith("reference.py")

    def test_file_function(self, tmp_path: Path) -> None:
        path = write(tmp_path, "impl.py", "def f(*, dp_rank, dp_size):\n    return (dp_rank, 0)\n")
        target = load_target(f"{path}:f")
        assert target.accepts == {"dp_rank", "dp_size"}
        assert target.source_file == str(path)

    def test_two_files_with_one_stem_stay_apart(self, tmp_path: Path) -> None:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        one = write(tmp_path / "a", "m.py", "def f(*, dp_rank):\n    return 1, 0\n")
        two = write(tmp_path / "b", "m.py", "def f(*, dp_rank):\n    return 2, 0\n")
        first, second = load_target(f"{one}:f"), load_target(f"{two}:f")
        assert first.function(dp_rank=0) == (1, 0)
        assert second.function(dp_rank=0) == (2, 0)

    def test_dotted_attribute(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "impl.py",
            """
            class Slicer:
                @staticmethod
                def slice(*, dp_rank):
                    return dp_rank, 1
            """,
        )
        assert load_target(f"{path}:Slicer.slice").function(dp_rank=3) == (3, 1)

    def test_var_keyword_takes_the_whole_convention(self, tmp_path: Path) -> None:
        path = write(tmp_path, "impl.py", "def f(**kwargs):\n    return 0, 0\n")
        assert load_target(f"{path}:f").accepts == set(CONVENTION)

    def test_optional_extras_and_var_positional_are_allowed(self, tmp_path: Path) -> None:
        path = write(
            tmp_path, "impl.py", "def f(dp_rank, *rest, verbose=False):\n    return 0, 0\n"
        )
        assert load_target(f"{path}:f").accepts == {"dp_rank"}


def test_a_targets_file_is_found_without_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dpslice.reference

    assert spec_source("dpslice.reference:dp_local_slice") == Path(dpslice.reference.__file__)
    package = tmp_path / "unimported"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    write(package, "impl.py", "def f(*, dp_rank):\n    return 0, 0\n")
    monkeypatch.chdir(tmp_path)  # the working directory, last on the path, holds it
    assert spec_source("unimported.impl:f") == package / "impl.py"
    assert spec_source("unimported:f") == package / "__init__.py"
    assert spec_source("impl.py:f") == (tmp_path / "impl.py")
    for nowhere in ("unimported.missing:f", "unimported.impl.deeper:f", "sys:exit"):
        assert spec_source(nowhere) is None, nowhere


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_a_target_named_in_any_python_identifier_loads(tmp_path: Path, form: str) -> None:
    path = write(tmp_path, "módulo.py", "def función(*, dp_rank):\n    return dp_rank, 0\n")
    name = unicodedata.normalize(form, "función")  # a shell may hand either form
    target = load_target(f"{path}:{name}")
    assert (target.name, target.function(dp_rank=2)) == ("función", (2, 0))
    check_spec("mod:ƒ")
    check_spec("paquete.módulo:Clase.método")


BAD_TARGETS = [
    pytest.param("dpslice.reference", "no ':function' part", id="no-colon"),
    pytest.param("dpslice.reference:", "no ':function' part", id="empty-function"),
    pytest.param("dpslice.reference:1x", "not a Python name", id="function-not-a-name"),
    pytest.param("dpslice.reference:a-b", "not a Python name", id="function-with-a-dash"),
    pytest.param("dpslice.reference:a..b", "not a Python name", id="empty-part"),
    pytest.param(
        "dpslice.no_such_module:f", "module 'dpslice.no_such_module' not found", id="no-module"
    ),
    pytest.param("no/such/file.py:f", "file 'no/such/file.py' not found", id="no-file"),
    pytest.param(
        "dpslice.reference:dp_local_slise", "did you mean 'dp_local_slice'", id="no-attribute"
    ),
    pytest.param("dpslice.reference:__all__", "is a list, not callable", id="not-callable"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_TARGETS)
def test_bad_target_is_refused_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(BadTargetError, match=message) as caught:
        load_target(spec)
    assert "\n" not in str(caught.value)


BAD_FILES = [
    pytest.param(
        "def f(dp_rank, tokens):\n    return 0, 0\n",
        "required parameter 'tokens' is not in the calling convention",
        id="required-outside-convention",
    ),
    pytest.param(
        "def f(dp_rank, /):\n    return 0, 0\n",
        "parameter 'dp_rank' is positional-only",
        id="positional-only-convention-name",
    ),
    pytest.param(
        "def f(batch, /, *, dp_rank):\n    return 0, 0\n",
        "parameter 'batch' is positional-only",
        id="positional-only-required",
    ),
    pytest.param("def f(:\n", "raised SyntaxError", id="syntax-error"),
    pytest.param("import no_such_dependency\n", "ModuleNotFoundError", id="import-fails"),
    pytest.param(
        "raise RuntimeError('boom\\nsecond line')\n", "RuntimeError: boom second line", id="raises"
    ),
]


@pytest.mark.parametrize(("source", "message"), BAD_FILES)
def test_bad_file_target_is_refused_in_one_line(tmp_path: Path, source: str, message: str) -> None:
    path = write(tmp_path, "impl.py", source)
    with pytest.raises(BadTargetError, match=message) as caught:
        load_target(f"{path}:f")
    assert "\n" not in str(caught.value)


def test_module_failing_inside_its_import_is_not_called_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "broken_pkg_for_dpslice"
    package.mkdir()
    write(package, "__init__.py", "import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BadTargetError, match="importing 'broken_pkg_for_dpslice' failed"):
        load_target("broken_pkg_for_dpslice:f")


def test_callable_without_a_signature_is_refused() -> None:
    class Opaque:
        __signature__ = "not a signature"

        def __call__(self) -> None: ...

    with pytest.raises(BadTargetError, match="cannot read the signature"):
        target_from_callable(Opaque())


class TestArguments:
    def test_only_the_named_parameters_are_passed(self) -> None:
        target = load_target("dpslice.specimens.upstream:get_dp_local_slice_cpu_as_merged")
        layout = DPLayout((3, 1), Mode.GRAPH_REPLAY, graph_batch_size=2, num_tokens_per_bs=2)
        arguments = target.arguments(layout.call(1), layout.gpu_counts(1))
        assert arguments == {
            "global_num_tokens_cpu": [3, 1],
            "dp_rank": 1,
            "can_run_graph": True,
            "cuda_graph_batch": 2,
        }

    def test_gpu_counts_are_an_int64_tensor_on_the_device(self) -> None:
        def reads_gpu(*, global_num_tokens_gpu: torch.Tensor) -> tuple[int, int]:
            return 0, 0

        target = target_from_callable(reads_gpu)
        layout = DPLayout.capture(2, 3)
        arguments = target.arguments(layout.call(0), layout.gpu_counts(0))
        tensor = arguments["global_num_tokens_gpu"]
        assert isinstance(tensor, torch.Tensor)
        assert tensor.dtype == torch.int64
        assert tensor.device.type == "cpu"
        assert tensor.tolist() == [3, 3]


def returning(value: object) -> Callable[..., object]:
    def target(*, dp_rank: int) -> object:
        return value

    return target


class _Spanlike:
    start, length = 2, 5


RETURNS = [
    pytest.param((1, 2), (1, 2), id="tuple"),
    pytest.param(DPSlice(3, 4), (3, 4), id="dpslice"),
    pytest.param(_Spanlike(), (2, 5), id="start-length-attributes"),
    pytest.param(
        (torch.tensor(7), torch.tensor(1, dtype=torch.int32)), (7, 1), id="0-dim-int-tensors"
    ),
]


@pytest.mark.parametrize(("value", "expected"), RETURNS)
def test_slices_are_read_from_every_allowed_shape(value: object, expected: tuple[int, int]) -> None:
    outcome = call_target(target_from_callable(returning(value)), {"dp_rank": 0})
    assert outcome.kind is OutcomeKind.RETURNED
    assert outcome.slice == expected


MALFORMED = [
    pytest.param((True, 1), "start is the bool True", id="bool"),
    pytest.param((0, 1.0), "length is the float 1.0", id="float"),
    pytest.param((torch.tensor(0.0), 1), "0-dim torch.float32 tensor", id="float-tensor"),
    pytest.param((torch.tensor([0, 1]), 1), "tensor of shape (2,)", id="1-d-tensor"),
    pytest.param((torch.tensor(True), 1), "0-dim torch.bool tensor", id="bool-tensor"),
    pytest.param([0, 1], "a list; return (start, length)", id="list"),
    pytest.param(None, "a NoneType", id="none"),
    pytest.param(("0", 1), "start is str '0'", id="str"),
]


@pytest.mark.parametrize(("value", "problem"), MALFORMED)
def test_results_that_are_not_slices_are_malformed(value: object, problem: str) -> None:
    outcome = call_target(target_from_callable(returning(value)), {"dp_rank": 0})
    assert outcome.kind is OutcomeKind.MALFORMED
    assert outcome.problem is not None
    assert problem in outcome.problem
    assert outcome.describe().startswith("returned ")


def test_an_error_never_raised_has_no_cause_to_tell() -> None:
    """Deliberate means raised by a ``raise`` statement: an unraised error is incidental."""
    assert is_incidental(ValueError("never raised"))


def test_torch_errors_are_incidental() -> None:
    with pytest.raises(RuntimeError) as caught:
        torch.zeros(2) + torch.zeros(3)
    assert is_incidental(caught.value)


def test_a_crash_in_code_the_target_calls_is_located_where_it_broke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "helper_for_dpslice_check.py", "def index(xs, i):\n    return xs[i]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(
        tmp_path,
        "impl.py",
        """
        from helper_for_dpslice_check import index

        def f(*, global_num_tokens_cpu, dp_rank):
            return 0, index(global_num_tokens_cpu, dp_rank)
        """,
    )
    outcome = call_target(load_target(f"{path}:f"), {"global_num_tokens_cpu": None, "dp_rank": 0})
    assert outcome.kind is OutcomeKind.INCIDENTAL
    assert outcome.error == "TypeError"
    assert outcome.message == "'NoneType' object is not subscriptable"
    # The helper is code under check too (a module of the user's, or an installed
    # engine the target wraps): the line to look at is where it broke.
    assert outcome.location is not None
    assert outcome.location.endswith("helper_for_dpslice_check.py:2")
    assert "crashed with incidental TypeError" in outcome.describe()


def test_a_crash_outside_any_known_file_is_located_at_the_innermost_frame() -> None:
    class Slicer:
        def __call__(self, *, dp_rank: int) -> tuple[int, int]:
            raise IndexError("rank out of list")

    target = target_from_callable(Slicer(), spec="tests:Slicer")
    assert target.source_file is None
    outcome = call_target(target, {"dp_rank": 0})
    assert outcome.location is not None
    assert outcome.location.startswith("tests/test_check_target.py:")


def test_a_deliberate_error_keeps_its_type_and_message() -> None:
    outcome = call_target(
        load_target("dpslice.reference:dp_local_slice"),
        {"global_num_tokens_cpu": None, "dp_rank": 0, "dp_size": 1},
    )
    assert outcome.kind is OutcomeKind.DELIBERATE
    assert outcome.error == "CountsUnavailableError"
    assert outcome.location is not None
    assert "reference.py" in outcome.location


def test_keyboard_interrupt_is_not_swallowed() -> None:
    def interrupted(*, dp_rank: int) -> tuple[int, int]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_target(target_from_callable(interrupted), {"dp_rank": 0})


def test_the_arguments_of_a_target_that_reads_no_tensor_import_no_torch() -> None:
    """A supervising process renders a hung call's arguments; it must not pay torch's import
    for a target that reads only ints."""
    result = run_fresh(
        """
        import sys
        from dpslice.check.target import target_from_callable
        from dpslice.layout import DPLayout, Mode
        def local_slice(*, global_num_tokens_cpu, dp_rank): return (0, 0)
        call = DPLayout(mode=Mode.SUM_LEN, counts=(1, 2)).call(1)
        arguments = target_from_callable(local_slice).arguments(call, [1, 2])
        print(arguments, 'torch' in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "{'global_num_tokens_cpu': [1, 2], 'dp_rank': 1} False\n"
