"""Tests of dpslice.layout: the ground-truth model of the gathered DP buffer.

The hand-written buffers below were worked out on paper from the engine rules (docs/hazards.md), one
per way an engine lays the ranks out; the properties check that ``span()``,
the cheap form of the oracle, agrees with the materialised buffer.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given
from hypothesis.vendor.pretty import pretty

from dpslice import PAD_ROW, DPLayout, Mode, Owns, RowSpan, SliceCall
from dpslice.errors import InvalidLayoutError
from dpslice.strategies import dp_layouts, layouts_and_ranks
from tests.engine import pad_rows, real_rows

SPEC_DECODE = DPLayout((1, 4), Mode.GRAPH_REPLAY, graph_batch_size=2, num_tokens_per_bs=3)
CAPTURE = DPLayout.capture(2, graph_batch_size=2, num_tokens_per_bs=2)

# layout, rank, its gathered buffer, its CPU count list, its span (first row, rows)
EXAMPLES = [
    pytest.param(
        DPLayout((2, 0, 3)),
        1,
        real_rows(0, 2) + real_rows(2, 3),
        [2, 0, 3],
        (2, 0),
        id="sum-len-packed-empty-rank",
    ),
    pytest.param(
        DPLayout((2, 0, 3)),
        2,
        real_rows(0, 2) + real_rows(2, 3),
        [2, 0, 3],
        (2, 3),
        id="sum-len-packed-last-rank",
    ),
    pytest.param(
        DPLayout((2, 0, 3), Mode.MAX_LEN),
        1,
        real_rows(0, 2) + pad_rows(0, 1) + pad_rows(1, 3) + real_rows(2, 3),
        [3, 3, 3],
        (3, 3),
        id="max-len-padded-cpu-list",
    ),
    pytest.param(
        SPEC_DECODE,
        1,
        real_rows(0, 1) + pad_rows(0, 5) + real_rows(1, 4) + pad_rows(1, 2),
        [1, 4],
        (6, 4),
        id="graph-replay-num-tokens-per-bs-3",
    ),
    pytest.param(
        CAPTURE,
        1,
        real_rows(0, 4) + real_rows(1, 4),
        None,
        (4, 4),
        id="graph-capture-no-cpu-counts",
    ),
    pytest.param(
        DPLayout((3, 1), attn_tp_size=2),
        1,
        real_rows(0, 3) + pad_rows(0, 1) + real_rows(1, 1) + pad_rows(1, 1),
        [4, 2],
        (4, 2),
        id="sum-len-attn-tp-rounding",
    ),
    pytest.param(
        DPLayout((3, 1), Mode.MAX_LEN, attn_tp_size=4),
        1,
        real_rows(0, 3) + pad_rows(0, 1) + real_rows(1, 1) + pad_rows(1, 3),
        [4, 4],
        (4, 4),
        id="max-len-attn-tp-rounding",
    ),
    pytest.param(
        DPLayout((3, 0), Mode.GRAPH_REPLAY, attn_tp_size=2, graph_batch_size=5),
        0,
        real_rows(0, 3) + pad_rows(0, 2) + pad_rows(1, 5),
        [3, 0],  # decode-graph replay hands the raw, unrounded counts
        (0, 3),
        id="graph-replay-attn-tp-rounding",
    ),
    pytest.param(
        DPLayout((2, 1), Mode.PREFILL_GRAPH, graph_batch_size=3),
        1,
        real_rows(0, 2) + pad_rows(0, 1) + real_rows(1, 1) + pad_rows(1, 2),
        [3, 3],  # padded to the bucket and written back
        (3, 3),
        id="prefill-graph-bucket",
    ),
    pytest.param(
        DPLayout((300, 5), Mode.DP_CHUNK, chunk_size=256),
        1,
        real_rows(0, 256) + real_rows(1, 5),
        [300, 5],
        (256, 5),
        id="dp-chunk-0",
    ),
    pytest.param(
        DPLayout((3, 1), Mode.DP_CHUNK, chunk_size=2, chunk_index=1),
        1,
        [[0, 2], [1, PAD_ROW]],  # rank 0's third token; rank 1 ran out: one dummy row
        [3, 1],
        (1, 0),
        id="dp-chunk-1-rank-run-out",
    ),
    pytest.param(
        DPLayout((2, 3), gather_skipped=True),
        1,
        real_rows(1, 3),
        [3],
        (0, 3),
        id="sum-len-gather-skipped",
    ),
    pytest.param(
        DPLayout((1, 2), Mode.GRAPH_REPLAY, graph_batch_size=3, gather_skipped=True),
        1,
        real_rows(1, 2) + pad_rows(1, 1),
        [2],
        (0, 2),
        id="graph-replay-gather-skipped",
    ),
]


class TestHandWrittenBuffers:
    @pytest.mark.parametrize(("layout", "rank", "buffer", "cpu_counts", "span"), EXAMPLES)
    def test_gathered_buffer(self, layout, rank, buffer, cpu_counts, span):
        gathered = layout.gathered(rank)
        assert gathered.dtype == torch.int64
        assert gathered.tolist() == buffer
        assert layout.gathered_rows(rank) == len(buffer)

    @pytest.mark.parametrize(("layout", "rank", "buffer", "cpu_counts", "span"), EXAMPLES)
    def test_cpu_counts_as_the_engine_fills_them(self, layout, rank, buffer, cpu_counts, span):
        assert layout.global_num_tokens_cpu(rank) == cpu_counts
        assert layout.call(rank).global_num_tokens_cpu == cpu_counts

    @pytest.mark.parametrize(("layout", "rank", "buffer", "cpu_counts", "span"), EXAMPLES)
    def test_span_and_expected_rows(self, layout, rank, buffer, cpu_counts, span):
        first_row, num_rows = span
        assert layout.span(rank) == RowSpan(first_row, num_rows)
        own = buffer[first_row : first_row + num_rows]
        assert layout.expected_rows(rank).tolist() == own


class TestBlocks:
    def test_block_counts_are_every_gathered_ranks_whole_block(self):
        assert DPLayout((2, 3)).block_counts(0) == [2, 3]
        assert DPLayout((2, 3), Mode.MAX_LEN).block_counts(1) == [3, 3]
        replay = DPLayout((1, 3), Mode.GRAPH_REPLAY, graph_batch_size=2, num_tokens_per_bs=2)
        assert replay.block_counts(0) == [4, 4]
        skipped = DPLayout((1, 3), Mode.GRAPH_REPLAY, graph_batch_size=4, gather_skipped=True)
        assert skipped.block_counts(1) == [4]

    def test_expected_rows_follow_what_the_rank_owns(self):
        replay = DPLayout((1, 3), Mode.GRAPH_REPLAY, graph_batch_size=4)
        assert replay.expected_rows(0).tolist() == [[0, 0]]
        padded = replay.expected_rows(0, Owns.PADDED_BLOCK).tolist()
        assert padded == [[0, 0], [0, PAD_ROW], [0, PAD_ROW], [0, PAD_ROW]]


class TestSliceCall:
    def test_eager_call_has_no_graph_fields(self):
        assert DPLayout((2, 0, 3)).call(2) == SliceCall(
            global_num_tokens_cpu=[2, 0, 3],
            dp_rank=2,
            dp_size=3,
            can_run_graph=False,
            graph_extent=None,
            cuda_graph_batch=None,
            num_tokens_per_bs=1,
        )

    def test_a_chunk_call_names_its_chunk(self):
        layout = DPLayout((3, 1), Mode.DP_CHUNK, chunk_size=2, chunk_index=1)
        assert layout.call(0) == SliceCall(
            global_num_tokens_cpu=[3, 1],
            dp_rank=0,
            dp_size=2,
            can_run_graph=False,
            graph_extent=None,
            cuda_graph_batch=None,
            num_tokens_per_bs=1,
            chunk_size=2,
            chunk_index=1,
        )

    def test_a_prefill_graph_call_has_no_decode_batch(self):
        # sglang #30712: can_run_graph with cuda_graph_batch None; the counts are padded.
        assert DPLayout((2, 1), Mode.PREFILL_GRAPH, graph_batch_size=3).call(1) == SliceCall(
            global_num_tokens_cpu=[3, 3],
            dp_rank=1,
            dp_size=2,
            can_run_graph=True,
            graph_extent=None,
            cuda_graph_batch=None,
            num_tokens_per_bs=1,
        )

    def test_replay_call_separates_extent_from_request_count(self):
        assert SPEC_DECODE.call(1) == SliceCall(
            global_num_tokens_cpu=[1, 4],
            dp_rank=1,
            dp_size=2,
            can_run_graph=True,
            graph_extent=6,
            cuda_graph_batch=2,
            num_tokens_per_bs=3,
        )

    def test_capture_call_has_none_counts(self):
        assert CAPTURE.call(0) == SliceCall(
            global_num_tokens_cpu=None,
            dp_rank=0,
            dp_size=2,
            can_run_graph=True,
            graph_extent=4,
            cuda_graph_batch=2,
            num_tokens_per_bs=2,
        )

    def test_gpu_counts_are_populated_even_in_capture(self):
        counts = CAPTURE.global_num_tokens_gpu(0)
        assert counts.dtype == torch.int64
        assert counts.tolist() == [4, 4]

    def test_gpu_counts_honour_dtype(self):
        counts = DPLayout((3, 1), attn_tp_size=2).global_num_tokens_gpu(1, dtype=torch.int32)
        assert counts.dtype == torch.int32
        assert counts.tolist() == [4, 2]

    def test_gpu_counts_of_a_skipped_gather_are_the_one_entry_cpu_list(self):
        skipped = DPLayout((3, 5), Mode.MAX_LEN, attn_tp_size=2, gather_skipped=True)
        assert skipped.global_num_tokens_gpu(0).tolist() == [6]
        assert skipped.gpu_counts(1) == skipped.global_num_tokens_cpu(1) == [6]

    def test_capture_defaults_to_one_token_per_request(self):
        assert DPLayout.capture(2, graph_batch_size=3) == DPLayout(
            (3, 3), Mode.GRAPH_CAPTURE, graph_batch_size=3
        )

    def test_capture_of_several_tokens_per_request(self):
        # Built at run time, not at import: CAPTURE above is built before any test runs.
        assert DPLayout.capture(2, graph_batch_size=2, num_tokens_per_bs=3) == DPLayout(
            (6, 6), Mode.GRAPH_CAPTURE, graph_batch_size=2, num_tokens_per_bs=3
        )

    def test_layout_is_frozen(self):
        with pytest.raises(dataclasses.FrozenInstanceError):
            DPLayout((1,)).counts = (2,)  # type: ignore[misc]


class TestMode:
    @pytest.mark.parametrize(
        ("mode", "is_graph"),
        [
            (Mode.SUM_LEN, False),
            (Mode.MAX_LEN, False),
            (Mode.GRAPH_REPLAY, True),
            (Mode.GRAPH_CAPTURE, True),
            (Mode.PREFILL_GRAPH, True),
            (Mode.DP_CHUNK, False),
        ],
        ids=lambda value: repr(value) if isinstance(value, Mode) else None,
    )
    def test_is_graph(self, mode, is_graph):
        assert mode.is_graph is is_graph

    def test_repr_is_the_expression(self):
        assert repr(Mode.GRAPH_REPLAY) == "Mode.GRAPH_REPLAY"


class TestSpanProperty:
    @given(layouts_and_ranks(dp_layouts(max_count=64)))
    def test_span_holds_every_real_row_of_the_rank_in_order_and_nothing_else(self, layout_and_rank):
        """``span(rank)`` covers this rank's real rows of the materialised buffer, in order,
        followed only by this rank's own padding, and lies inside the buffer."""
        layout, rank = layout_and_rank
        buffer = layout.gathered(rank)
        span = layout.span(rank)
        assert 0 <= span.first_row <= span.first_row + span.num_rows <= len(buffer)

        owners, local_rows = buffer[:, 0], buffer[:, 1]
        real = ((owners == rank) & (local_rows != PAD_ROW)).nonzero().flatten().tolist()
        count = layout.real_rows(rank)
        assert real == list(range(span.first_row, span.first_row + count))
        # A DP chunk's rows are tagged by their row in the rank's whole batch.
        offset = (layout.chunk_size or 0) * layout.chunk_index
        assert local_rows[real].tolist() == list(range(offset, offset + count))

        inside = buffer[span.first_row : span.first_row + span.num_rows]
        assert (inside[:, 0] == rank).all()
        assert (inside[count:, 1] == PAD_ROW).all()
        assert inside.tolist() == layout.expected_rows(rank).tolist()

        block = layout.span(rank, Owns.PADDED_BLOCK)
        assert (block.first_row, block.num_rows) == (span.first_row, layout.region(rank))
        assert (buffer[block.first_row : block.first_row + block.num_rows, 0] == rank).all()


class TestRepr:
    @pytest.mark.parametrize(
        ("layout", "text"),
        [
            pytest.param(DPLayout((1, 2)), "DPLayout(counts=(1, 2))", id="defaults-left-out"),
            pytest.param(
                SPEC_DECODE,
                "DPLayout(counts=(1, 4), mode=Mode.GRAPH_REPLAY, graph_batch_size=2, "
                "num_tokens_per_bs=3)",
                id="graph-replay",
            ),
            pytest.param(
                DPLayout((3,), Mode.MAX_LEN, attn_tp_size=2, gather_skipped=True),
                "DPLayout(counts=(3,), mode=Mode.MAX_LEN, attn_tp_size=2, gather_skipped=True)",
                id="max-len-skipped",
            ),
        ],
    )
    def test_repr_names_only_what_differs_from_the_defaults(self, layout, text):
        assert repr(layout) == text

    def test_pretty_printer_shows_the_repr(self):
        """Hypothesis prints falsifying examples with its pretty-printer."""
        assert pretty(SPEC_DECODE) == repr(SPEC_DECODE)

    @given(dp_layouts())
    def test_repr_evaluates_back_to_an_equal_layout(self, layout):
        """``eval(repr(layout))`` with only ``DPLayout`` and ``Mode`` in scope rebuilds it."""
        namespace = {"DPLayout": DPLayout, "Mode": Mode}
        assert eval(repr(layout), namespace) == layout


def _gathered(layout: DPLayout, rank: int, **kwargs: int):
    return lambda: layout.gathered(rank, **kwargs)


INVALID_LAYOUTS = [
    pytest.param(
        lambda: DPLayout([1, 2]),
        "counts must be a non-empty tuple of ints, one per DP rank; got [1, 2]",
        id="counts-a-list",
    ),
    pytest.param(
        lambda: DPLayout(()),
        "counts must be a non-empty tuple of ints, one per DP rank; got ()",
        id="counts-empty",
    ),
    pytest.param(
        lambda: DPLayout((1, -1)),
        "counts[1] = -1; every count must be an int >= 0",
        id="count-negative",
    ),
    pytest.param(
        lambda: DPLayout((1, True)),
        "counts[1] = True; every count must be an int >= 0",
        id="count-bool",
    ),
    pytest.param(
        lambda: DPLayout((1.0,)),
        "counts[0] = 1.0; every count must be an int >= 0",
        id="count-float",
    ),
    pytest.param(
        lambda: DPLayout((1,), "sum_len"),
        "mode must be a dpslice.Mode; got 'sum_len'",
        id="mode-a-string",
    ),
    pytest.param(
        lambda: DPLayout((1,), attn_tp_size=0),
        "attn_tp_size must be an int >= 1; got 0",
        id="attn-tp-size-zero",
    ),
    pytest.param(
        lambda: DPLayout((1,), attn_tp_size=True),
        "attn_tp_size must be an int >= 1; got True",
        id="attn-tp-size-bool",
    ),
    pytest.param(
        lambda: DPLayout((1,), Mode.GRAPH_REPLAY, graph_batch_size=1, num_tokens_per_bs=0),
        "num_tokens_per_bs must be an int >= 1; got 0",
        id="num-tokens-per-bs-zero",
    ),
    pytest.param(
        lambda: DPLayout((1,), graph_batch_size=2),
        (
            "SUM_LEN is an eager layout: leave graph_batch_size None and "
            "num_tokens_per_bs 1, or use Mode.GRAPH_REPLAY"
        ),
        id="eager-with-graph-bs",
    ),
    pytest.param(
        lambda: DPLayout((1,), Mode.MAX_LEN, num_tokens_per_bs=2),
        (
            "MAX_LEN is an eager layout: leave graph_batch_size None and "
            "num_tokens_per_bs 1, or use Mode.GRAPH_REPLAY"
        ),
        id="eager-with-num-tokens-per-bs",
    ),
    pytest.param(
        lambda: DPLayout((1,), Mode.GRAPH_REPLAY),
        "GRAPH_REPLAY needs graph_batch_size, an int >= 1; got None",
        id="replay-no-bs",
    ),
    pytest.param(
        lambda: DPLayout((0,), Mode.GRAPH_REPLAY, graph_batch_size=0),
        "GRAPH_REPLAY needs graph_batch_size, an int >= 1; got 0",
        id="replay-bs-zero",
    ),
    pytest.param(
        lambda: DPLayout((1,), Mode.GRAPH_REPLAY, graph_batch_size=2.0),
        "GRAPH_REPLAY needs graph_batch_size, an int >= 1; got 2.0",
        id="replay-bs-float",
    ),
    pytest.param(
        lambda: DPLayout((5,), Mode.GRAPH_REPLAY, graph_batch_size=2, num_tokens_per_bs=2),
        (
            "a rank holds 5 rows (after attention-TP rounding) but the graph extent"
            " is 2 * 2 = 4; a graph of that size cannot replay this batch: raise "
            "graph_batch_size"
        ),
        id="replay-count-over-extent",
    ),
    pytest.param(
        lambda: DPLayout((3,), Mode.GRAPH_REPLAY, attn_tp_size=2, graph_batch_size=3),
        (
            "a rank holds 4 rows (after attention-TP rounding) but the graph extent"
            " is 3 * 1 = 3; a graph of that size cannot replay this batch: raise "
            "graph_batch_size"
        ),
        id="replay-rounded-count-over-extent",
    ),
    pytest.param(
        lambda: DPLayout((1, 2), Mode.GRAPH_CAPTURE, graph_batch_size=2),
        (
            "capture runs a uniform dummy batch: every count must equal the graph "
            "extent 2; got (1, 2). Use DPLayout.capture()"
        ),
        id="capture-not-uniform",
    ),
    pytest.param(
        lambda: DPLayout((2,), Mode.GRAPH_CAPTURE, graph_batch_size=2, gather_skipped=True),
        (
            "a skipped all-gather has a one-entry count list, but capture has no "
            "CPU counts at all; use gather_skipped with an eager or replay layout"
        ),
        id="capture-gather-skipped",
    ),
    pytest.param(
        _gathered(DPLayout((1, 2)), 2),
        "dp_rank must be an int in range(2); got 2",
        id="gathered-rank-too-large",
    ),
    pytest.param(
        lambda: DPLayout((1, 2)).global_num_tokens_cpu(-1),
        "dp_rank must be an int in range(2); got -1",
        id="cpu-counts-rank-negative",
    ),
    pytest.param(
        lambda: DPLayout((1, 2)).span(True),
        "dp_rank must be an int in range(2); got True",
        id="span-rank-bool",
    ),
    pytest.param(
        lambda: DPLayout((1, 2)).call(5),
        "dp_rank must be an int in range(2); got 5",
        id="call-rank-too-large",
    ),
    pytest.param(
        _gathered(DPLayout((10, 10)), 0, max_rows=19),
        (
            "the gathered buffer would have 20 rows, over max_rows=19; use "
            "DPLayout.span() for the position of a rank's rows, or raise max_rows"
        ),
        id="over-max-rows",
    ),
    pytest.param(
        _gathered(DPLayout((2**31 - 1,) * 64), 63),
        (
            "the gathered buffer would have 137438953408 rows, over "
            "max_rows=1048576; use DPLayout.span() for the position of a rank's "
            "rows, or raise max_rows"
        ),
        id="over-default-max-rows",
    ),
    pytest.param(
        lambda: DPLayout((1,), chunk_size=2),
        "chunk_size and chunk_index belong to Mode.DP_CHUNK; leave them unset for SUM_LEN",
        id="chunk-size-outside-chunking",
    ),
    pytest.param(
        lambda: DPLayout((1,), Mode.MAX_LEN, chunk_index=1),
        "chunk_size and chunk_index belong to Mode.DP_CHUNK; leave them unset for MAX_LEN",
        id="chunk-index-outside-chunking",
    ),
    pytest.param(
        lambda: DPLayout((1,), Mode.PREFILL_GRAPH),
        "PREFILL_GRAPH needs graph_batch_size, the bucket in tokens (an int >= 1); got None",
        id="prefill-no-bucket",
    ),
    pytest.param(
        lambda: DPLayout((1,), Mode.PREFILL_GRAPH, graph_batch_size=0),
        "PREFILL_GRAPH needs graph_batch_size, the bucket in tokens (an int >= 1); got 0",
        id="prefill-bucket-zero",
    ),
    pytest.param(
        lambda: DPLayout((1,), Mode.PREFILL_GRAPH, graph_batch_size=True),
        "PREFILL_GRAPH needs graph_batch_size, the bucket in tokens (an int >= 1); got True",
        id="prefill-bucket-bool",
    ),
    pytest.param(
        lambda: DPLayout((1,), Mode.PREFILL_GRAPH, graph_batch_size=4, num_tokens_per_bs=2),
        "a prefill graph pads tokens, not requests: leave num_tokens_per_bs 1",
        id="prefill-tokens-per-request",
    ),
    pytest.param(
        lambda: DPLayout((5,), Mode.PREFILL_GRAPH, graph_batch_size=4),
        "a rank holds 5 rows (after attention-TP rounding) but the prefill bucket is 4; the "
        "batch would not fit that graph: raise graph_batch_size",
        id="prefill-bucket-too-small",
    ),
    pytest.param(
        lambda: DPLayout((1,), Mode.DP_CHUNK),
        "DP_CHUNK needs chunk_size, an int >= 1; got None",
        id="chunk-no-size",
    ),
    pytest.param(
        lambda: DPLayout((1,), Mode.DP_CHUNK, chunk_size=0),
        "DP_CHUNK needs chunk_size, an int >= 1; got 0",
        id="chunk-size-zero",
    ),
    pytest.param(
        lambda: DPLayout((1,), Mode.DP_CHUNK, chunk_size=True),
        "DP_CHUNK needs chunk_size, an int >= 1; got True",
        id="chunk-size-bool",
    ),
    pytest.param(
        lambda: DPLayout((2,), Mode.DP_CHUNK, chunk_size=1, attn_tp_size=2),
        "DP chunking does not round counts: leave attn_tp_size 1",
        id="chunk-with-attn-tp",
    ),
    pytest.param(
        lambda: DPLayout((3,), Mode.DP_CHUNK, chunk_size=2, chunk_index=2),
        "chunk_index must be an int in range(2) for the largest count 3 in chunks of 2; got 2",
        id="chunk-index-past-the-last",
    ),
    pytest.param(
        lambda: DPLayout((3,), Mode.DP_CHUNK, chunk_size=2, chunk_index=True),
        "chunk_index must be an int in range(2) for the largest count 3 in chunks of 2; got True",
        id="chunk-index-bool",
    ),
    pytest.param(
        lambda: DPLayout((0,), Mode.DP_CHUNK, chunk_size=3, chunk_index=1),
        "chunk_index must be an int in range(1) for the largest count 0 in chunks of 3; got 1",
        id="chunk-index-of-an-empty-forward",
    ),
]


class TestInvalidLayouts:
    @pytest.mark.parametrize(("build", "message"), INVALID_LAYOUTS)
    def test_raises_invalid_layout_error_saying_what_to_do(self, build, message):
        with pytest.raises(InvalidLayoutError) as raised:
            build()
        assert str(raised.value) == message

    def test_max_rows_is_inclusive(self):
        assert len(DPLayout((10, 10)).gathered(0, max_rows=20)) == 20


class TestDevice:
    """Every tensor the model builds lands on the device asked for, as int64 tags.

    The ``meta`` device stands in for a GPU: it is not the default, so a
    tensor built without the argument would show up on the CPU instead.
    """

    def test_tensors_are_built_on_the_cpu_unless_told(self):
        assert SPEC_DECODE.contribution(1).device == torch.device("cpu")
        assert SPEC_DECODE.gathered(1).device == torch.device("cpu")
        assert SPEC_DECODE.global_num_tokens_gpu(1).device == torch.device("cpu")

    @pytest.mark.parametrize(
        "build",
        [
            pytest.param(lambda layout: layout.contribution(1, device="meta"), id="contribution"),
            pytest.param(lambda layout: layout.gathered(1, device="meta"), id="gathered"),
            pytest.param(lambda layout: layout.expected_rows(1, device="meta"), id="expected_rows"),
            pytest.param(
                lambda layout: layout.global_num_tokens_gpu(1, device="meta"), id="gpu_counts"
            ),
        ],
    )
    @pytest.mark.parametrize("layout", [SPEC_DECODE, CAPTURE, DPLayout((2, 1), Mode.MAX_LEN)])
    def test_tensors_land_on_the_device_asked_for(self, build, layout):
        tensor = build(layout)
        assert tensor.device == torch.device("meta")
        assert tensor.dtype == torch.int64
