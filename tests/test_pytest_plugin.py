"""dpslice's pytest plugin, driven through pytester in throwaway projects."""

from __future__ import annotations

import pytest

from dpslice.pytest_plugin import cuda_available

pytest_plugins = ["pytester"]

no_gpu = pytest.mark.skipif(cuda_available(), reason="checks behaviour without a GPU")
#: A line that syncs in the automatic mode (on a GPU, one that allocates no CUDA memory).
SYNC = "torch.cuda.synchronize()" if cuda_available() else "int(torch.tensor(1))"

SYNCING_TEST = """
import pytest
import torch

@pytest.mark.no_sync{args}
def test_reads_a_count():
    count = torch.tensor(3)
    assert int(count) == 3
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "-rs", *args)


class TestMarkers:
    def test_both_markers_are_registered(self, pytester: pytest.Pytester) -> None:
        result = run(pytester, "--markers")
        result.stdout.fnmatch_lines(["@pytest.mark.cuda:*", "@pytest.mark.no_sync(mode='auto'):*"])

    def test_marked_tests_pass_strict_markers(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            import pytest

            @pytest.mark.cuda
            def test_on_gpu():
                pass

            @pytest.mark.no_sync(mode="cpu")
            def test_clean():
                pass
            """
        )
        result = run(pytester, "--strict-markers")
        assert result.ret == pytest.ExitCode.OK

    @no_gpu
    def test_a_cuda_test_is_skipped_cleanly_without_a_gpu(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile("import pytest\n\n@pytest.mark.cuda\ndef test_x():\n    assert False\n")
        result = run(pytester)
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*needs a CUDA device; none is available here*"])


class TestUnconfiguredProject:
    """A project that only has dpslice installed sees no rule and no guard it did not ask for."""

    def test_a_cuda_folder_without_the_marker_passes(self, pytester: pytest.Pytester) -> None:
        pytester.makeini("[pytest]\n")
        pytester.makepyfile(
            **{"tests/cuda/test_kernels": "def test_kernel_math():\n    assert 1 + 1 == 2\n"}
        )
        result = run(pytester, "--strict-markers", "--strict-config")
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        result.assert_outcomes(passed=1)

    def test_an_unmarked_test_that_syncs_is_not_guarded(self, pytester: pytest.Pytester) -> None:
        pytester.makeini("[pytest]\n")
        pytester.makepyfile(
            "import torch\n\ndef test_reads():\n    assert int(torch.tensor(3)) == 3\n"
        )
        run(pytester).assert_outcomes(passed=1)


class TestCudaDirectoryGuard:
    @pytest.fixture(autouse=True)
    def _opt_in(self, pytester: pytest.Pytester) -> None:
        pytester.makeini("[pytest]\ndpslice_cuda_dirs = cuda\n")

    def test_an_unmarked_test_under_a_cuda_directory_errors(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makepyfile(**{"cuda/test_forgot": "def test_vacuous():\n    pass\n"})
        result = run(pytester)
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(
            ["*lives under a 'cuda/' directory but lacks @pytest.mark.cuda*"]
        )

    def test_a_module_level_marker_satisfies_the_guard(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            **{"cuda/test_marked": "import pytest\npytestmark = pytest.mark.cuda\n\n"
               "def test_x():\n    pass\n"}
        )  # fmt: skip
        result = run(pytester)
        assert result.ret == pytest.ExitCode.OK
        result.assert_outcomes(**({"passed": 1} if cuda_available() else {"skipped": 1}))

    def test_the_directories_are_configurable(self, pytester: pytest.Pytester) -> None:
        pytester.makeini("[pytest]\ndpslice_cuda_dirs = gpu\n")
        pytester.makepyfile(**{"gpu/test_a": "def test_x():\n    pass\n"})
        pytester.makepyfile(**{"cuda/test_b": "def test_y():\n    pass\n"})
        result = run(pytester)
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(["*'gpu/' directory*"])

    def test_an_empty_setting_turns_the_guard_off(self, pytester: pytest.Pytester) -> None:
        pytester.makeini("[pytest]\ndpslice_cuda_dirs =\n")
        pytester.makepyfile(**{"cuda/test_a": "def test_x():\n    pass\n"})
        run(pytester).assert_outcomes(passed=1)

    def test_folders_above_the_rootdir_do_not_count(self, pytester: pytest.Pytester) -> None:
        project = pytester.mkdir("cuda")
        (project / "pytest.ini").write_text("[pytest]\ndpslice_cuda_dirs = cuda\n")
        (project / "test_a.py").write_text("def test_x():\n    pass\n")
        run(pytester, str(project)).assert_outcomes(passed=1)


class TestNoSyncMarker:
    def test_a_sync_fails_the_test_naming_the_op_and_the_line(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makepyfile(test_marked=SYNCING_TEST.format(args='(mode="cpu")'))
        result = run(pytester)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            ["*ImplicitSyncError: Tensor.__int__ synchronised the host*at *test_marked.py:7*"]
        )

    def test_a_sync_the_body_swallows_still_fails_the_test(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            test_swallows="""
            import pytest
            import torch

            @pytest.mark.no_sync(mode="cpu")
            def test_careless():
                try:
                    int(torch.tensor(3))
                except Exception:
                    pass
            """
        )
        result = run(pytester)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            ["*Tensor.__int__ synchronised the host*test_swallows.py:7*", "*caught the error*"]
        )

    def test_a_test_without_a_sync_passes(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            import pytest
            import torch

            @pytest.mark.no_sync(mode="cpu")
            def test_slices_with_ints():
                assert torch.arange(10)[2:5].shape == (3,)
            """
        )
        run(pytester).assert_outcomes(passed=1)

    @no_gpu
    def test_auto_mode_is_cpu_mode_without_a_gpu(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(test_marked=SYNCING_TEST.format(args=""))
        run(pytester).assert_outcomes(failed=1)

    @pytest.mark.cuda
    def test_auto_mode_is_cuda_mode_on_a_gpu(self, pytester: pytest.Pytester) -> None:
        """A CPU tensor's int() does not sync, and CUDA mode knows it."""
        pytester.makepyfile(test_marked=SYNCING_TEST.format(args=""))
        run(pytester).assert_outcomes(passed=1)

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            pytest.param('("cpu")', "keyword arguments only", id="positional"),
            pytest.param('(mode="gpu")', "choose one of", id="unknown-mode"),
            pytest.param('(mode="cpu", colour=1)', "colour", id="unknown-option"),
        ],
    )
    def test_a_malformed_marker_is_a_usage_error(
        self, pytester: pytest.Pytester, args: str, message: str
    ) -> None:
        pytester.makepyfile(test_marked=SYNCING_TEST.format(args=args))
        result = run(pytester)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*{message}*"])


class TestNoSyncFixture:
    def test_requesting_the_fixture_guards_the_test_body(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            test_body=f"""
            import torch

            def test_body(no_sync):
                {SYNC}
            """
        )
        result = run(pytester)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*synchronised the host*test_body.py:4*"])

    def test_the_marker_picks_the_body_guards_mode(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            test_body="""
            import pytest
            import torch

            @pytest.mark.no_sync(mode="cpu")
            def test_body(no_sync):
                torch.tensor(1).item()
            """
        )
        result = run(pytester)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*Tensor.item synchronised the host*test_body.py:6*"])

    def test_setup_and_teardown_are_not_guarded(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            import pytest
            import torch

            @pytest.fixture
            def count(no_sync):
                yield int(torch.tensor(3))
                int(torch.tensor(4))

            @pytest.mark.no_sync(mode="cpu")
            def test_uses(count):
                assert count == 3
            """
        )
        run(pytester).assert_outcomes(passed=1)

    def test_the_fixture_records_a_nested_block_in_a_chosen_mode(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makepyfile(
            """
            import torch

            def test_block(no_sync):
                with no_sync as outer, no_sync(mode="cpu", record=True) as inner:
                    torch.tensor(2).item()
                assert [event.op for event in inner.events] == ["Tensor.item"]
                assert outer.events == []
            """
        )
        run(pytester).assert_outcomes(passed=1)

    def test_overlapping_blocks_in_threads_close_their_own_guard(
        self, pytester: pytest.Pytester
    ) -> None:
        """Thread a opens a block, b opens one, a leaves first: b's block still guards b."""
        pytester.makepyfile(
            f"""
            import threading
            import torch

            def test_threads(no_sync):
                a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
                outcome = {{}}

                def a():
                    try:
                        with no_sync:
                            a_in.set()
                            b_in.wait(5)
                        outcome["a"] = "left cleanly"
                    except Exception as error:
                        outcome["a"] = repr(error)
                    a_out.set()

                def b():
                    a_in.wait(5)
                    try:
                        with no_sync:
                            b_in.set()
                            a_out.wait(5)
                            {SYNC}
                        outcome["b"] = "no error"
                    except Exception as error:
                        outcome["b"] = type(error).__name__

                threads = [threading.Thread(target=a), threading.Thread(target=b)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(5)
                assert outcome == {{"a": "left cleanly", "b": "ImplicitSyncError"}}
            """
        )
        result = run(pytester)
        result.assert_outcomes(passed=1)


class TestStrictCuda:
    @no_gpu
    def test_the_option_is_accepted_and_inert_without_a_gpu(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makepyfile("def test_x():\n    pass\n")
        run(pytester, "-o", "dpslice_strict_cuda=true", "--strict-config").assert_outcomes(passed=1)

    @pytest.mark.cuda
    def test_an_unmarked_test_that_allocates_cuda_memory_fails(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makepyfile(
            """
            import pytest
            import torch

            def test_unmarked():
                torch.ones(3, device="cuda")

            @pytest.mark.cuda
            def test_marked():
                torch.ones(3, device="cuda")
            """
        )
        result = run(pytester, "-o", "dpslice_strict_cuda=true")
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*test_unmarked allocated CUDA memory without*"])
