"""dpslice's pytest plugin, driven through pytester in throwaway projects."""

from __future__ import annotations

import pytest

from dpslice.pytest_plugin import cuda_available
from tests.processes import run_fresh
from tests.targets.sources import MINIMAL_CAPTURER

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


class TestProjectMarkers:
    """A project's own ``cuda`` or ``no_sync`` marker stays the project's."""

    @no_gpu
    def test_a_project_cuda_marker_in_its_ini_is_left_alone(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makeini("[pytest]\nmarkers =\n    cuda: runs our CUDA emulator\n")
        pytester.makepyfile("import pytest\n\n@pytest.mark.cuda\ndef test_x():\n    pass\n")
        result = run(pytester, "--strict-markers")
        result.assert_outcomes(passed=1)
        markers = run(pytester, "--markers").stdout.lines
        assert [line for line in markers if line.startswith("@pytest.mark.cuda")] == [
            "@pytest.mark.cuda: runs our CUDA emulator"
        ]

    @no_gpu
    def test_a_project_cuda_marker_from_its_conftest_is_left_alone(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makeconftest(
            "def pytest_configure(config):\n    config.addinivalue_line('markers', 'cuda: ours')\n"
        )
        pytester.makepyfile("import pytest\n\n@pytest.mark.cuda\ndef test_x():\n    pass\n")
        run(pytester, "--strict-markers").assert_outcomes(passed=1)

    def test_a_project_no_sync_marker_guards_nothing(self, pytester: pytest.Pytester) -> None:
        pytester.makeini("[pytest]\nmarkers =\n    no_sync(reason): our own bookkeeping\n")
        pytester.makepyfile(SYNCING_TEST.format(args="(reason='ours')"))
        run(pytester, "--strict-markers").assert_outcomes(passed=1)


class TestNoSyncReadsBack:
    """CPU-only mode under the marker: a test reads its results back; a value read still counts."""

    README_TEST = """
        import pytest
        import torch
        from dpslice import DPLayout, dp_local_slice

        @pytest.mark.no_sync{args}
        def test_slice_does_not_sync():
            layout = DPLayout(counts=(3, 0, 5))
            buffer = layout.gathered(2)
            start, length = dp_local_slice(layout.global_num_tokens_cpu(2), 2, dp_size=3)
            rows = buffer[{bound}:start + length]
            assert rows.tolist() == layout.expected_rows(2).tolist()
            assert torch.equal(rows, layout.expected_rows(2))
        """

    def test_reading_results_back_passes(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(self.README_TEST.format(args="", bound="start"))
        run(pytester).assert_outcomes(passed=1)

    @no_gpu  # CUDA mode judges real devices: a host tensor's bound is no sync there
    def test_a_tensor_bound_fails_naming_its_line(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(self.README_TEST.format(args="", bound="torch.tensor(start)"))
        result = run(pytester)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            ["*ImplicitSyncError: Tensor.__getitem__ synchronised the host*test_*.py:10*"]
        )

    @no_gpu
    def test_read_back_true_counts_the_tests_own_reads(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(self.README_TEST.format(args="(read_back=True)", bound="start"))
        result = run(pytester)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*Tensor.tolist synchronised the host*"])


OFF_BY_ONE = """
def local_slice(*, global_num_tokens_cpu, dp_rank):
    counts = global_num_tokens_cpu
    return sum(counts[:dp_rank]) + (dp_rank > 0), counts[dp_rank]
"""

CAPTURER = MINIMAL_CAPTURER


def run_battery(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The battery as tests, on few layouts.  In this process: the targets run in the
    plugin's own worker processes, which the inner session stops when it ends."""
    return pytester.runpytest(
        "-p", "no:cacheprovider", "-rsw", "--dpslice-max-examples", "20", *args
    )


class TestBatteryAsTests:
    def test_one_test_per_property_is_collected(self, pytester: pytest.Pytester) -> None:
        from dpslice.check.registry import registered

        pytester.makepyfile(slicer=CAPTURER)
        result = run(pytester, "--dpslice-target", "slicer.py:local_slice", "--co", "-q")
        names = [prop.name for prop in registered()]
        assert [line for line in result.stdout.lines if "::" in line] == [
            f"dpslice-check/slicer.py:local_slice::{name}" for name in names
        ]

    def test_a_hazard_fails_with_its_counterexample(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(slicer=OFF_BY_ONE)
        result = run_battery(
            pytester, "--dpslice-target", "slicer.py:local_slice", "-k", "sum_len_rows"
        )
        result.assert_outcomes(failed=1, deselected=13)
        output = result.stdout.str()
        assert "collected 14 items / 13 deselected / 1 selected" in output
        for line in (
            "FAIL sum_len_rows (hazard):",
            "  layout     DPLayout(counts=(0, 0))",
            "  rank       1",
            "  call       local_slice(global_num_tokens_cpu=[0, 0], dp_rank=1)",
            "  outcome    returned (1, 0)",
            "  reproduce  dpslice check slicer.py:local_slice --seed ",
        ):
            assert line in output
        assert "Traceback" not in result.stdout.str()

    @pytest.mark.slow  # test_check_properties_in_a_test_module skips the same property by default
    def test_not_applicable_is_a_skip_with_its_reason(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(slicer=CAPTURER)
        result = run_battery(
            pytester, "--dpslice-target", "slicer.py:local_slice", "-k", "dp_chunk_rows"
        )
        result.assert_outcomes(skipped=1, deselected=13)
        result.stdout.fnmatch_lines(["SKIPPED*dp_chunk_rows: *never reaches DP_CHUNK*"])

    HARDENING = ("--dpslice-target", "slicer.py:local_slice", "-k", "invalid_inputs_refused")

    def test_a_hardening_warn_is_a_warning(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(slicer=CAPTURER)
        warned = run_battery(pytester, *self.HARDENING)
        warned.assert_outcomes(passed=1, deselected=13, warnings=1)
        warned.stdout.fnmatch_lines(["*HardeningWarning: WARN invalid_inputs_refused*"])

    # A second session and worker; strict's verdicts are checked in this process by
    # tests/test_check_contracts.py::test_strict_fails_a_correct_capturer_on_hardening_only.
    @pytest.mark.slow
    def test_a_hardening_warn_fails_under_strict(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(slicer=CAPTURER)
        strict = run_battery(pytester, *self.HARDENING, "--dpslice-strict")
        strict.assert_outcomes(failed=1, deselected=13)
        strict.stdout.fnmatch_lines(["*FAIL invalid_inputs_refused (hardening)*"])

    @pytest.mark.slow  # a timeout and a new worker; test_check_supervisor.py hangs calls by default
    def test_a_call_that_hangs_fails_after_the_timeout(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            slicer="import time\n\ndef local_slice(*, global_num_tokens_cpu, dp_rank):\n"
            "    time.sleep(3600)\n"
        )
        result = run_battery(
            pytester,
            "--dpslice-target",
            "slicer.py:local_slice",
            "--dpslice-timeout",
            "1",
            "-k",
            "sum_len_rows",
        )
        result.assert_outcomes(failed=1, deselected=13)
        result.stdout.fnmatch_lines(["*outcome    did not return within 1 s*"])

    def test_a_target_that_cannot_load_fails_each_test_once_loaded(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makepyfile(slicer="raise ImportError('no engine here')\n")
        result = run_battery(
            pytester, "--dpslice-target", "slicer.py:local_slice", "-k", "rows and not dp_chunk"
        )
        result.assert_outcomes(failed=5, deselected=9)
        result.stdout.fnmatch_lines(["*bad target slicer.py:local_slice*no engine here*"])

    @pytest.mark.parametrize(
        ("option", "value", "message"),
        [
            ("--dpslice-target", "slicer.py", "has no ':function' part"),
            ("--dpslice-target", "missing.py:f", "file 'missing.py' not found"),
            ("--dpslice-device", "tpu", "tpu"),
            ("--dpslice-max-examples", "0", "max_examples=0 must be an int >= 1"),
            ("--dpslice-timeout", "0", "a call timeout of 0.0 s cannot be measured"),
            ("--dpslice-seed", "-1", "seed=-1 must be an int >= 0"),
        ],
    )
    def test_a_bad_option_is_a_usage_error(
        self, pytester: pytest.Pytester, option: str, value: str, message: str
    ) -> None:
        pytester.makepyfile(slicer=CAPTURER)
        args = [option, value]
        if option != "--dpslice-target":
            args += ["--dpslice-target", "slicer.py:local_slice"]
        result = run(pytester, *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*{message}*"])

    def test_check_properties_in_a_test_module(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(slicer=OFF_BY_ONE)
        pytester.makepyfile(
            test_slicer="from dpslice.pytest_plugin import check_properties\n\n"
            "test_local_slice = check_properties('slicer.py:local_slice', max_examples=20)\n"
        )
        result = pytester.runpytest("-p", "no:cacheprovider", "-k", "sum_len_rows or dp_chunk_rows")
        result.assert_outcomes(failed=1, skipped=1, deselected=12)
        result.stdout.fnmatch_lines(["FAILED test_slicer.py::test_local_slice[[]sum_len_rows[]]*"])

    def test_check_properties_refuses_a_bad_spec_at_import(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            test_slicer="from dpslice.pytest_plugin import check_properties\n\n"
            "test_local_slice = check_properties('slicer')\n"
        )
        result = run(pytester)
        result.stdout.fnmatch_lines(["*BadTargetError: target 'slicer' has no ':function' part*"])


def test_the_plugins_options_load_no_other_module_of_the_check() -> None:
    """The plugin's option table is read in every pytest run: it loads nothing else of
    dpslice.check, whose names load on first use."""
    result = run_fresh(
        """
        import sys, dpslice.pytest_plugin, dpslice.check.options
        print(sorted(m for m in sys.modules if m.startswith('dpslice.check.')))
        from dpslice.check import Verdict, run_check
        print(Verdict.PASS.value, run_check.__module__)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['dpslice.check.options']", "PASS dpslice.check.runner"]
