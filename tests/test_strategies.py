"""Tests of dpslice.strategies: one class per public strategy.

Each option is shown to produce what it promises (with ``find`` for what must
be reachable, ``@given`` for what must always hold), each invalid argument to
raise ``InvalidArgument`` with its exact message, and counterexamples to shrink
to tiny layouts.

Strategies are built inside the tests (``data.draw``), not in ``@given``'s
arguments: mutmut runs a mutant only against the tests that call the mutated
function, and a strategy built at import time is built before any test runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest
import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument, NoSuchExample

from dpslice import DPLayout, Mode
from dpslice.contracts import PRESETS, SGLANG_CAPTURER, SGLANG_GATHER, VLLM_CHUNKED, VLLM_DP
from dpslice.errors import InvalidInputError, InvalidLayoutError, NegativeCountError
from dpslice.strategies import (
    _DRAWN_APART,
    _PLANS,
    DEFECT_KINDS,
    INVALID_CAUSES,
    MAX_COUNT,
    _Built,
    _count_table,
    _CountLists,
    _non_integers,
    _share,
    contract_layouts,
    dp_layouts,
    dp_sizes,
    invalid_calls,
    layouts_and_ranks,
    token_counts,
)
from tests.engine import reference_slice

NON_CAPTURE = [Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY]

#: For the ``@given`` checks of a strategy's options: a fifth of the profile's
#: examples (the heavy properties in tests/properties get the full budget).
OPTION_CHECK = settings(max_examples=max(50, settings.default.max_examples // 5))

#: For the ``@given`` checks of :func:`invalid_calls`, which draw a layout per example.
INVALID_CALL_CHECK = settings(max_examples=max(20, settings.default.max_examples // 20))


def _drawn(strategy: st.SearchStrategy[object], examples: int = 300) -> list[object]:
    """What ``strategy`` draws over one run of ``examples`` examples, for statistics.

    Derandomized in every profile: Hypothesis mutates earlier examples, so the
    mix of a random run varies widely and a frequency check on it would be flaky.
    """
    seen: list[object] = []

    @settings(max_examples=examples, database=None, derandomize=True)
    @given(strategy)
    def record(value: object) -> None:
        seen.append(value)

    record()
    return seen


class TestDPSizes:
    @OPTION_CHECK
    @given(st.data(), st.integers(1, 70), st.integers(0, 10))
    def test_sizes_stay_in_bounds(self, data, min_size, extra):
        size = data.draw(dp_sizes(min_size=min_size, max_size=min_size + extra))
        assert min_size <= size <= min_size + extra

    @OPTION_CHECK
    @given(st.data())
    def test_default_bounds_are_1_to_64(self, data):
        size = data.draw(dp_sizes())
        assert type(size) is int
        assert 1 <= size <= 64

    def test_default_sizes_shrink_to_1(self):
        assert find(dp_sizes(), lambda size: True) == 1

    def test_mostly_small_up_to_8(self):
        """Most sizes are at most 8; 9 comes only from the full range, far less often than 8."""
        # Drawn twenty to a list: alone, the 88 distinct draws are soon exhausted
        # and Hypothesis never repeats one, which hides the weighting.
        sizes = [
            size
            for sizes in _drawn(st.lists(dp_sizes(), min_size=20, max_size=20))
            for size in sizes
        ]
        assert sum(size <= 8 for size in sizes) > 0.5 * len(sizes)
        drawn = Counter(sizes)
        assert 2 * drawn[9] < drawn[8]

    def test_large_sizes_are_reachable(self):
        assert find(dp_sizes(), lambda size: size > 8) == 9
        assert find(dp_sizes(), lambda size: size == 64) == 64

    def test_shrinks_to_min_size(self):
        assert find(dp_sizes(min_size=5, max_size=20), lambda size: True) == 5


class TestTokenCounts:
    @OPTION_CHECK
    @given(st.data())
    def test_lengths_and_counts_stay_in_bounds(self, data):
        counts = data.draw(token_counts(min_size=2, max_size=5, max_count=100))
        assert isinstance(counts, tuple)
        assert 2 <= len(counts) <= 5
        assert all(type(count) is int and 0 <= count <= 100 for count in counts)

    def test_a_zero_rank_beside_a_busy_one(self):
        assert find(token_counts(min_size=2), lambda counts: 0 in counts and any(counts)) == (0, 1)

    def test_all_ranks_zero(self):
        assert find(token_counts(min_size=3), lambda counts: not any(counts)) == (0, 0, 0)

    def test_int32_limit_by_default(self):
        assert MAX_COUNT == 2**31 - 1
        found = find(token_counts(), lambda counts: MAX_COUNT in counts)
        assert found == (MAX_COUNT,)

    def test_max_count_itself_is_drawn(self):
        assert find(token_counts(max_count=100), lambda counts: 100 in counts) == (100,)

    def test_counts_shrink_to_zero_and_one_rank(self):
        assert find(token_counts(), lambda counts: any(counts)) == (1,)

    @OPTION_CHECK
    @given(st.data())
    def test_max_count_0_draws_only_zeros(self, data):
        counts = data.draw(token_counts(max_count=0))
        assert counts == (0,) * len(counts)

    def test_zeros_small_counts_and_max_count_are_each_common(self):
        drawn = Counter(count for counts in _drawn(token_counts()) for count in counts)
        total = sum(drawn.values())
        assert drawn[0] > 0.15 * total
        assert sum(drawn[count] for count in range(1, 17)) > 0.2 * total
        assert drawn[MAX_COUNT] > 0.08 * total

    def test_small_counts_stop_at_16(self):
        """Small counts are 0 to 16: 17 comes only from the range up to MAX_COUNT, which
        almost never draws a count that small."""
        drawn = Counter(count for counts in _drawn(token_counts()) for count in counts)
        assert 4 * drawn[17] < drawn[16]

    def test_64_ranks_are_drawn_by_default(self):
        assert find(token_counts(), lambda counts: len(counts) == 64) == (0,) * 64

    def test_long_lists_shrink_to_17_entries(self):
        """A list of more than 16 entries is drawn long (from 17 entries) or full, and
        shrinks to the shortest long one."""
        assert find(token_counts(), lambda counts: len(counts) > 16) == (0,) * 17

    def test_mostly_small_sizes_some_long_and_some_of_max_size(self):
        sizes = Counter(
            len(counts)
            for lists in _drawn(st.lists(token_counts(), min_size=20, max_size=20))
            for counts in lists
        )
        total = sum(sizes.values())
        assert sum(sizes[size] for size in range(1, 9)) > 0.7 * total
        assert 0.05 * total < sum(sizes[size] for size in range(17, 65)) < 0.2 * total
        assert 0.01 * total < sizes[64] < 0.05 * total

    def test_a_failure_on_counts_far_apart_shrinks_to_two_ranks(self):
        found = find(token_counts(), lambda counts: len(counts) > 1 and counts[-1] > counts[0])
        assert found == (0, 1)

    @OPTION_CHECK
    @given(st.data())
    def test_min_size_and_max_size_above_16_bound_every_kind_of_list(self, data):
        counts = data.draw(token_counts(min_size=20, max_size=30, max_count=5))
        assert 20 <= len(counts) <= 30


class TestCountBytes:
    """How a count list is drawn (the private helpers of :func:`token_counts`): a byte per
    rank, decoded by bands.  Pinned exactly: a band's edge moved by one would still draw
    valid counts, only a different mix."""

    SMALL = tuple(count for count in range(1, 17) for _ in range(6))

    def test_the_bands_over_the_int32_range(self):
        assert _count_table(0, MAX_COUNT) == (
            (0,) * 52 + self.SMALL + (_DRAWN_APART,) * 64 + (MAX_COUNT,) * 44
        )

    def test_a_range_of_up_to_64_counts_sits_in_its_band(self):
        table = _count_table(0, 32)
        assert table[:148] == (0,) * 52 + self.SMALL
        assert table[148:212] == tuple(byte * 33 // 64 for byte in range(64))
        assert set(table[148:212]) == set(range(33))
        assert table[212:] == (32,) * 44

    @pytest.mark.parametrize(
        ("min_count", "max_count", "apart"),
        [(0, 63, False), (0, 64, True), (1, 64, False), (1, 65, True)],
    )
    def test_a_wider_range_draws_those_counts_apart(self, min_count, max_count, apart):
        table = _count_table(min_count, max_count)
        assert (_DRAWN_APART in table) is apart
        assert table[147] == min_count + 16
        assert table[212] == max_count

    def test_small_counts_stop_at_the_largest(self):
        table = _count_table(3, 10)
        assert table[:148] == (3,) * 52 + tuple(3 + min(count, 7) for count in self.SMALL)
        assert table[148:212] == tuple(3 + byte * 8 // 64 for byte in range(64))
        assert table[212:] == (10,) * 44

    def test_a_single_count(self):
        assert _count_table(1, 1) == (1,) * 256

    def test_lists_of_up_to_16_entries_take_no_length_choice(self):
        assert _CountLists(1, 16, 0, 5).sizes is None
        lists = _CountLists(2, 17, 0, 5)
        assert repr(lists.sizes) == "integers(min_value=0, max_value=31)"
        assert repr(lists.plain) == "binary(min_size=2, max_size=17)"
        assert repr(lists.long) == "binary(min_size=17, max_size=17)"
        assert repr(lists.full) == "binary(min_size=17, max_size=17)"
        assert repr(_CountLists(20, 64, 0, 5).long) == "binary(min_size=20, max_size=64)"

    def test_a_header_comes_before_the_counts(self):
        lists = _CountLists(2, 17, 0, 5, header=3)
        assert lists.header == 3
        assert repr(lists.plain) == "binary(min_size=5, max_size=20)"
        assert repr(lists.long) == "binary(min_size=20, max_size=20)"
        assert repr(lists.full) == "binary(min_size=20, max_size=20)"
        assert lists.counts(lambda strategy: None, bytes([255, 255, 255, 0, 52])) == (0, 1)
        assert _CountLists(1, 4, 0, 5).header == 0

    @pytest.mark.parametrize(
        ("size", "kind"), [(0, "plain"), (29, "plain"), (30, "long"), (31, "full")]
    )
    def test_the_length_choice_picks_the_strategy_of_the_bytes(self, size, kind):
        lists = _CountLists(1, 64, 0, MAX_COUNT)
        drawn = {lists.sizes: size, lists.plain: b"p", lists.long: b"l", lists.full: b"f"}
        assert lists.raw(drawn.__getitem__) == {"plain": b"p", "long": b"l", "full": b"f"}[kind]

    def test_each_count_of_the_any_band_is_drawn_apart(self):
        lists = _CountLists(1, 4, 0, MAX_COUNT)
        drawn = iter([7, 9])
        raw = bytes([0, 148, 255, 211, 51])
        assert lists.counts(lambda strategy: next(drawn), raw) == (0, 7, MAX_COUNT, 9, 0)
        assert repr(lists.apart) == "integers(min_value=0, max_value=2_147_483_647)"
        assert _CountLists(1, 4, 0, 63).apart is None

    def test_a_list_with_nothing_drawn_apart(self):
        lists = _CountLists(1, 4, 0, 32)
        raw = bytes([0, 52, 148, 211, 255])
        assert lists.counts(lambda strategy: None, raw) == (0, 1, 0, 32, 32)


class TestBuilt:
    def test_a_strategy_is_built_once_per_key(self):
        built = _Built()
        assert built.integers(0, 3) is built.integers(0, 3)
        assert repr(built.integers(0, 3)) == "integers(min_value=0, max_value=3)"
        assert built.integers(0, 3) is not built.integers(1, 3)
        made = []

        def make():
            made.append(1)
            return st.just(len(made))

        assert built.get("key", make) is built.get("key", make)
        assert built.get("other", make) is not built.get("key", make)
        assert len(made) == 2


class TestDPLayouts:
    @pytest.mark.parametrize("mode", list(Mode), ids=lambda mode: mode.name)
    def test_every_mode_is_drawn(self, mode):
        assert find(dp_layouts(), lambda layout: layout.mode is mode).mode is mode

    @OPTION_CHECK
    @given(st.data())
    def test_modes_restricts_the_modes(self, data):
        layout = data.draw(dp_layouts(modes=[Mode.MAX_LEN, Mode.GRAPH_REPLAY]))
        assert layout.mode in (Mode.MAX_LEN, Mode.GRAPH_REPLAY)

    @OPTION_CHECK
    @given(st.data())
    def test_dp_size_stays_in_bounds(self, data):
        layout = data.draw(dp_layouts(min_dp_size=3, max_dp_size=5))
        assert 3 <= layout.dp_size <= 5

    @OPTION_CHECK
    @given(st.data())
    def test_counts_stay_within_max_count(self, data):
        layout = data.draw(dp_layouts(max_count=20))
        assert all(count <= 20 for count in layout.counts)

    @OPTION_CHECK
    @given(st.data())
    def test_max_count_0_draws_empty_ranks_and_one_row_captures(self, data):
        layout = data.draw(dp_layouts(max_count=0))
        # A capture rank runs the dummy batch, which holds max(max_count, 1) rows.
        rows = 1 if layout.mode is Mode.GRAPH_CAPTURE else 0
        assert layout.counts == (rows,) * layout.dp_size

    @OPTION_CHECK
    @given(st.data())
    def test_attn_tp_sizes_are_used(self, data):
        layout = data.draw(dp_layouts(modes=NON_CAPTURE, attn_tp_sizes=(8,)))
        assert layout.attn_tp_size == 8
        assert all(layout.rows(rank) % 8 == 0 for rank in range(layout.dp_size))

    @OPTION_CHECK
    @given(st.data())
    def test_num_tokens_per_bs_stays_in_bounds_and_is_1_when_eager(self, data):
        layout = data.draw(dp_layouts(max_num_tokens_per_bs=3))
        assert 1 <= layout.num_tokens_per_bs <= 3
        if not layout.mode.is_graph:
            assert layout.num_tokens_per_bs == 1

    @OPTION_CHECK
    @given(st.data())
    def test_num_tokens_per_bs_is_at_most_8_by_default(self, data):
        layout = data.draw(dp_layouts(modes=[Mode.GRAPH_REPLAY, Mode.GRAPH_CAPTURE]))
        assert 1 <= layout.num_tokens_per_bs <= 8

    @pytest.mark.parametrize("mode", [Mode.GRAPH_REPLAY, Mode.GRAPH_CAPTURE], ids=lambda m: m.name)
    def test_num_tokens_per_bs_above_1_is_drawn(self, mode):
        found = find(dp_layouts(modes=[mode]), lambda layout: layout.num_tokens_per_bs > 1)
        assert found.num_tokens_per_bs == 2

    @pytest.mark.parametrize("mode", [Mode.GRAPH_REPLAY, Mode.GRAPH_CAPTURE], ids=lambda m: m.name)
    def test_num_tokens_per_bs_of_8_is_drawn_by_default(self, mode):
        found = find(dp_layouts(modes=[mode]), lambda layout: layout.num_tokens_per_bs >= 8)
        assert found.num_tokens_per_bs == 8

    def test_replay_extent_with_padding_is_drawn(self):
        found = find(
            dp_layouts(modes=[Mode.GRAPH_REPLAY]),
            lambda layout: layout.graph_extent > max(map(layout.rows, range(layout.dp_size))),
        )
        assert found == DPLayout((0,), Mode.GRAPH_REPLAY, graph_batch_size=1)

    def test_replay_graph_batch_size_shrinks_to_the_smallest_that_holds_every_rank(self):
        found = find(dp_layouts(modes=[Mode.GRAPH_REPLAY]), lambda layout: max(layout.counts) >= 5)
        assert found == DPLayout((5,), Mode.GRAPH_REPLAY, graph_batch_size=5)

    def test_the_header_holds_the_fields_with_a_choice_in_order(self):
        plan = _PLANS[dp_layouts()]
        assert plan.in_header == [
            (0, tuple(Mode)),
            (1, (False, True)),
            (2, (1, 2, 4)),
            (3, range(1, 9)),
            (4, range(4)),
        ]
        assert plan.first == [Mode.SUM_LEN, False, 1, 1, 0]
        assert plan.apart == []
        assert plan.counts.header == 5
        eager = _PLANS[dp_layouts(modes=[Mode.MAX_LEN], gather_skipped=True, attn_tp_sizes=(2,))]
        assert (eager.in_header, eager.first) == ([], [Mode.MAX_LEN, True, 2, 1, 0])
        assert eager.counts.header == 0
        prefill = _PLANS[dp_layouts(modes=[Mode.PREFILL_GRAPH], attn_tp_sizes=(1,))]
        assert prefill.in_header == [(1, (False, True)), (4, range(4))]

    @pytest.mark.parametrize(
        ("header", "picked"),
        [
            (bytes([0, 0, 0, 0, 0]), [Mode.SUM_LEN, False, 1, 1, 0]),
            (bytes([255, 255, 255, 255, 255]), [Mode.DP_CHUNK, True, 4, 8, 3]),
            (bytes([42, 127, 85, 31, 63]), [Mode.SUM_LEN, False, 1, 1, 0]),
            (bytes([43, 128, 86, 32, 64]), [Mode.MAX_LEN, True, 2, 2, 1]),
        ],
    )
    def test_a_header_byte_picks_among_its_fields_values_in_order(self, header, picked):
        plan = _PLANS[dp_layouts()]
        assert plan.picked(lambda strategy: None, header + bytes([9])) == picked

    def test_a_field_of_more_than_256_values_is_drawn_apart(self):
        plan = _PLANS[dp_layouts(modes=[Mode.GRAPH_REPLAY], max_num_tokens_per_bs=257)]
        assert [field for field, _ in plan.in_header] == [1, 2, 4]
        ((field, strategy),) = plan.apart
        assert (field, repr(strategy)) == (3, "integers(min_value=1, max_value=257)")
        assert plan.picked(lambda strategy: 200, bytes([0, 0, 0, 7])) == [
            Mode.GRAPH_REPLAY,
            False,
            1,
            200,
            0,
        ]
        in_bytes = _PLANS[dp_layouts(max_num_tokens_per_bs=256)]
        assert (in_bytes.in_header[3], in_bytes.apart) == ((3, range(1, 257)), [])
        tp_sizes = tuple(range(1, 258))
        ((field, strategy),) = _PLANS[dp_layouts(attn_tp_sizes=tp_sizes)].apart
        assert (field, repr(strategy)) == (2, f"sampled_from({tp_sizes!r})")

    @OPTION_CHECK
    @given(st.data())
    def test_every_field_stays_in_bounds(self, data):
        layout = data.draw(dp_layouts(max_num_tokens_per_bs=300, max_count=40))
        assert 1 <= layout.num_tokens_per_bs <= 300

    @OPTION_CHECK
    @given(st.data())
    def test_a_graph_holds_its_widest_rank_and_at_most_3_more(self, data):
        layout = data.draw(dp_layouts(modes=[Mode.GRAPH_REPLAY, Mode.PREFILL_GRAPH], max_count=40))
        if layout.mode is Mode.PREFILL_GRAPH:
            assert 0 <= layout.graph_batch_size - max(1, layout.widest_rows) <= 3
        else:
            smallest = max(1, -(-layout.widest_rows // layout.num_tokens_per_bs))
            assert 0 <= layout.graph_batch_size - smallest <= 3

    def test_an_idle_prefill_graph_shrinks_to_a_one_token_bucket(self):
        found = find(dp_layouts(modes=[Mode.PREFILL_GRAPH]), lambda layout: True)
        assert found == DPLayout((0,), Mode.PREFILL_GRAPH, graph_batch_size=1)

    @OPTION_CHECK
    @given(st.data(), st.integers(0, 40))
    def test_a_chunk_is_1_to_the_largest_count_and_one_of_its_chunks(self, data, max_count):
        layout = data.draw(dp_layouts(modes=[Mode.DP_CHUNK], max_count=max_count))
        assert 1 <= layout.chunk_size <= max(1, max(layout.counts))
        assert layout.chunk_size * layout.chunk_index < max(1, max(layout.counts))

    def test_chunks_smaller_than_the_largest_count_and_later_chunks_are_drawn(self):
        strategy = dp_layouts(modes=[Mode.DP_CHUNK], max_count=40)
        find(strategy, lambda layout: layout.chunk_size < max(layout.counts))
        found = find(strategy, lambda layout: layout.chunk_index > 0)
        assert found == DPLayout((2,), Mode.DP_CHUNK, chunk_size=1, chunk_index=1)

    def test_int32_limit_counts_are_drawn(self):
        assert MAX_COUNT in find(dp_layouts(), lambda layout: MAX_COUNT in layout.counts).counts

    def test_one_entry_count_lists_are_drawn(self):
        found = find(dp_layouts(), lambda layout: layout.gather_skipped and layout.dp_size > 1)
        assert found.global_num_tokens_cpu(1) == [found.counts[1]]

    def test_none_counts_are_drawn(self):
        found = find(dp_layouts(), lambda layout: layout.global_num_tokens_cpu(0) is None)
        assert found.mode is Mode.GRAPH_CAPTURE

    @OPTION_CHECK
    @given(st.data())
    def test_gather_skipped_true_draws_only_one_entry_lists(self, data):
        layout = data.draw(
            dp_layouts(modes=[Mode.SUM_LEN, Mode.GRAPH_CAPTURE], gather_skipped=True)
        )
        assert layout.mode is Mode.SUM_LEN
        assert layout.gather_skipped
        assert len(layout.global_num_tokens_cpu(layout.dp_size - 1)) == 1

    @OPTION_CHECK
    @given(st.data())
    def test_gather_skipped_false_draws_only_full_gathers(self, data):
        layout = data.draw(dp_layouts(gather_skipped=False))
        assert not layout.gather_skipped

    def test_gather_skipped_false_still_draws_capture(self):
        found = find(
            dp_layouts(gather_skipped=False), lambda layout: layout.mode is Mode.GRAPH_CAPTURE
        )
        assert found.mode is Mode.GRAPH_CAPTURE

    @pytest.mark.parametrize("skipped", [False, True])
    def test_gather_skipped_none_draws_both(self, skipped):
        assert find(dp_layouts(), lambda layout: layout.gather_skipped is skipped)

    def test_counterexample_shrinks_to_a_tiny_layout(self):
        """A failure that needs a busy rank in a speculative-decoding replay shrinks to one
        rank holding one token in a one-request graph of two rows per request."""
        found = find(
            dp_layouts(),
            lambda layout: (
                layout.mode is Mode.GRAPH_REPLAY
                and layout.num_tokens_per_bs > 1
                and any(count > 0 for count in layout.counts)
            ),
        )
        assert found.dp_size <= 2
        assert max(found.counts) <= 1
        assert found == DPLayout((1,), Mode.GRAPH_REPLAY, graph_batch_size=1, num_tokens_per_bs=2)


class TestContractLayouts:
    @pytest.mark.parametrize("name", list(PRESETS))
    @OPTION_CHECK
    @given(data=st.data())
    def test_only_the_states_the_contract_reaches_built_as_it_says(self, name, data):
        contract = PRESETS[name]
        layout = data.draw(contract_layouts(contract, gather_skipped=None))
        assert layout.mode in contract.modes
        assert layout.attn_tp_size in contract.attn_tp_sizes
        assert layout.num_tokens_per_bs <= contract.max_num_tokens_per_bs
        if layout.mode is not Mode.GRAPH_CAPTURE:
            assert min(layout.counts) >= contract.min_count
        if not contract.skipped_gather:
            assert not layout.gather_skipped

    @pytest.mark.parametrize("name", list(PRESETS))
    def test_every_state_the_contract_reaches_is_drawn(self, name):
        contract = PRESETS[name]
        for mode in contract.modes:
            find(contract_layouts(contract), lambda layout, mode=mode: layout.mode is mode)

    @OPTION_CHECK
    @given(data=st.data())
    def test_modes_narrow_the_contracts_states(self, data):
        layout = data.draw(contract_layouts(SGLANG_CAPTURER, modes=[Mode.MAX_LEN, Mode.DP_CHUNK]))
        assert layout.mode is Mode.MAX_LEN  # DP_CHUNK: a state the capturer never reaches

    def test_the_contracts_bounds_are_passed_on(self):
        find(contract_layouts(SGLANG_GATHER), lambda layout: layout.attn_tp_size == 4)
        find(contract_layouts(SGLANG_GATHER), lambda layout: layout.num_tokens_per_bs == 8)
        find(contract_layouts(VLLM_DP, max_dp_size=3), lambda layout: layout.dp_size == 3)
        find(contract_layouts(SGLANG_GATHER, max_count=9), lambda layout: max(layout.counts) == 9)
        find(contract_layouts(VLLM_CHUNKED), lambda layout: layout.chunk_size is not None)

    @OPTION_CHECK
    @given(data=st.data())
    def test_a_contracts_own_bounds_are_kept(self, data):
        two_rows = dataclasses.replace(SGLANG_CAPTURER, max_num_tokens_per_bs=2)
        layout = data.draw(contract_layouts(two_rows, modes=[Mode.GRAPH_REPLAY]))
        assert layout.num_tokens_per_bs <= 2
        assert layout.dp_size <= 64  # the default max_dp_size

    @OPTION_CHECK
    @given(data=st.data())
    def test_max_dp_size_and_max_count_bound_what_is_drawn(self, data):
        layout = data.draw(contract_layouts(SGLANG_GATHER, max_dp_size=3, max_count=5))
        assert layout.dp_size <= 3
        assert max(layout.counts) <= max(5, 1)  # a capture's dummy batch holds one row

    @OPTION_CHECK
    @given(data=st.data())
    def test_a_max_count_below_the_contracts_least_count_is_raised_to_it(self, data):
        layout = data.draw(contract_layouts(VLLM_DP, max_count=0))
        assert set(layout.counts) == {1}  # vLLM pads an idle rank to one token

    @OPTION_CHECK
    @given(data=st.data())
    def test_gather_skipped_true_draws_only_skipped_gathers(self, data):
        layout = data.draw(contract_layouts(SGLANG_CAPTURER, gather_skipped=True))
        assert layout.gather_skipped
        assert layout.mode is not Mode.GRAPH_CAPTURE

    @OPTION_CHECK
    @given(data=st.data())
    def test_gather_skipped_false_by_default(self, data):
        assert not data.draw(contract_layouts(SGLANG_CAPTURER)).gather_skipped

    @pytest.mark.parametrize("skipped", [True, False])
    def test_gather_skipped_none_draws_both_where_the_contract_skips(self, skipped):
        strategy = contract_layouts(SGLANG_CAPTURER, gather_skipped=None)
        find(strategy, lambda layout: layout.gather_skipped is skipped)

    @pytest.mark.parametrize(
        ("contract", "kwargs", "message"),
        [
            pytest.param(
                "sglang-capturer",
                {},
                "contract='sglang-capturer' must be a dpslice.contracts.Contract",
                id="not-a-contract",
            ),
            pytest.param(
                VLLM_DP,
                {"gather_skipped": True},
                "contract vllm-dp never skips the all-gather",
                id="never-skips",
            ),
            pytest.param(
                VLLM_DP,
                {"modes": [Mode.GRAPH_REPLAY]},
                "contract vllm-dp reaches none of the modes asked for; it reaches "
                + ", ".join(mode.name for mode in VLLM_DP.modes),
                id="no-mode-reached",
            ),
            pytest.param(
                SGLANG_CAPTURER,
                {"modes": [Mode.GRAPH_CAPTURE], "gather_skipped": True},
                "contract sglang-capturer reaches none of the modes asked for; it reaches "
                + ", ".join(mode.name for mode in SGLANG_CAPTURER.modes),
                id="capture-never-skipped",
            ),
            pytest.param(
                SGLANG_CAPTURER,
                {"modes": Mode.SUM_LEN},
                "modes=Mode.SUM_LEN must be a non-empty sequence of dpslice.Mode, "
                "e.g. modes=[Mode.SUM_LEN, Mode.GRAPH_REPLAY]",
                id="one-mode",
            ),
        ],
    )
    def test_bad_arguments_are_refused_with_what_to_do(self, contract, kwargs, message):
        with pytest.raises(InvalidArgument) as raised:
            contract_layouts(contract, **kwargs)
        assert str(raised.value) == message


class TestLayoutsAndRanks:
    @OPTION_CHECK
    @given(st.data())
    def test_rank_is_one_of_the_layouts_ranks(self, data):
        layout, rank = data.draw(layouts_and_ranks())
        assert type(rank) is int
        assert 0 <= rank < layout.dp_size

    @OPTION_CHECK
    @given(st.data())
    def test_layouts_come_from_the_given_strategy(self, data):
        layout, _ = data.draw(layouts_and_ranks(dp_layouts(modes=[Mode.MAX_LEN], max_dp_size=4)))
        assert layout.mode is Mode.MAX_LEN
        assert layout.dp_size <= 4

    def test_last_rank_is_drawn(self):
        pairs = _drawn(layouts_and_ranks(dp_layouts(min_dp_size=2, max_dp_size=4)))
        assert any(rank == layout.dp_size - 1 for layout, rank in pairs)

    def test_layouts_from_elsewhere_get_a_rank_too(self):
        layouts = st.just(DPLayout((0, 5, 0)))
        assert find(layouts_and_ranks(layouts), lambda pair: True) == (DPLayout((0, 5, 0)), 2)
        assert find(layouts_and_ranks(layouts), lambda pair: pair[1] == 0)[1] == 0

    def test_a_layout_and_its_rank_are_drawn_in_one_draw(self):
        layouts = dp_layouts(max_dp_size=3)
        assert _PLANS[layouts] is not None
        assert repr(layouts_and_ranks(layouts)).endswith(".layout_and_rank)")
        assert "_with_rank" in repr(layouts_and_ranks(st.just(DPLayout((1,)))))

    def test_rank_shrinks_to_0(self):
        assert find(layouts_and_ranks(), lambda layout_and_rank: True)[1] == 0

    def test_ranks_ahead_of_the_failing_one_shrink_away(self):
        """As documented: a failure on a rank above 0 shrinks to two ranks, not more."""
        layout, rank = find(
            layouts_and_ranks(dp_layouts(modes=[Mode.SUM_LEN], max_count=16)),
            lambda layout_and_rank: (
                layout_and_rank[1] > 0 and layout_and_rank[0].counts[layout_and_rank[1]] > 0
            ),
        )
        assert (layout.counts, rank) == ((0, 1), 1)

    def test_ranks_after_the_failing_one_shrink_away(self):
        """A failure that needs the rank after the failing one to hold more tokens keeps
        that rank and loses the others, on either side."""
        layout, rank = find(
            layouts_and_ranks(dp_layouts(modes=[Mode.SUM_LEN], max_count=16)),
            lambda pair: pair[1] + 1 < pair[0].dp_size and pair[0].counts[pair[1] + 1] > 0,
        )
        assert (layout.counts, rank) == ((0, 1), 0)

    @pytest.mark.parametrize(
        ("share", "counts", "rank"),
        [(0, (0, 1, 2, 3), 3), (1, (1, 2, 3, 0), 2), (3, (3, 0, 1, 2), 0), (4, (0, 1, 2, 3), 3)],
    )
    def test_the_rank_holds_the_last_count_drawn_and_the_first_ones_follow_it(
        self, share, counts, rank
    ):
        layouts = dp_layouts(
            modes=[Mode.SUM_LEN], max_dp_size=4, attn_tp_sizes=(1,), gather_skipped=False
        )
        plan = _PLANS[layouts]
        assert plan.ranked.header == plan.counts.header + 1 == 1
        raw = bytes([share, 0, 52, 58, 64])
        assert plan.layout_and_rank(lambda strategy: raw) == (DPLayout(counts), rank)

    @pytest.mark.parametrize(
        ("byte", "ranks", "after"),
        [
            (0, 1, 0),
            (255, 1, 0),
            (0, 4, 0),
            (3, 4, 3),
            (4, 4, 0),
            (66, 4, 0),
            (67, 4, 1),
            (255, 4, 3),
            (5, 16, 5),
            (16, 16, 0),
            (255, 16, 15),
            (255, 300, 255),
        ],
    )
    def test_a_byte_below_the_ranks_counts_them_and_one_above_takes_a_share(
        self, byte, ranks, after
    ):
        """Below the number of ranks a byte is the ranks after the rank, so that deleting
        ranks leaves them; above it, its share of the ranks, so that every rank is drawn
        about as often."""
        assert _share(byte, ranks) == after

    def test_every_number_of_ranks_after_is_drawn_about_as_often(self):
        for ranks in (2, 3, 5, 16, 64):
            drawn = Counter(_share(byte, ranks) for byte in range(256))
            assert set(drawn) == set(range(ranks))
            assert max(drawn.values()) - min(drawn.values()) <= 2

    def test_counterexample_on_a_later_rank_shrinks_to_two_empty_ranks(self):
        """A failure that needs rank > 0 of a speculative-decoding replay shrinks to rank 1
        of two empty ranks."""
        layout, rank = find(
            layouts_and_ranks(),
            lambda layout_and_rank: (
                layout_and_rank[1] > 0
                and layout_and_rank[0].mode is Mode.GRAPH_REPLAY
                and layout_and_rank[0].num_tokens_per_bs > 1
            ),
        )
        assert rank == 1
        assert layout == DPLayout(
            (0, 0), Mode.GRAPH_REPLAY, graph_batch_size=1, num_tokens_per_bs=2
        )


class TestInvalidCalls:
    # A twentieth of the profile per cause: drawing an invalid call costs about
    # 15 ms, and tests/properties runs the full budget over all causes mixed.
    @pytest.mark.parametrize("cause", INVALID_CAUSES, ids=lambda cause: cause.__name__)
    @settings(max_examples=max(20, settings.default.max_examples // 20))
    @given(data=st.data())
    def test_each_cause_really_raises_exactly_that_error(self, cause, data):
        invalid = data.draw(invalid_calls(causes=[cause]))
        assert invalid.expected is cause
        assert invalid.defect
        with pytest.raises(InvalidInputError) as raised:
            reference_slice(invalid.call)
        assert type(raised.value) is cause

    def test_every_kind_and_cause_is_drawn_by_default(self):
        drawn = _drawn(invalid_calls(), examples=800)
        assert {invalid.kind for invalid in drawn} == set(DEFECT_KINDS)
        assert {invalid.expected for invalid in drawn} == set(INVALID_CAUSES)

    @pytest.mark.parametrize("kind", DEFECT_KINDS)
    def test_a_kind_asked_for_is_the_kind_drawn(self, kind):
        for invalid in _drawn(invalid_calls(kinds=[kind]), examples=20):
            assert (invalid.kind, invalid.expected) == (kind, DEFECT_KINDS[kind])

    def test_the_extent_kinds_need_a_replay(self):
        with pytest.raises(InvalidArgument) as raised:
            invalid_calls(kinds=["negative graph extent"], modes=[Mode.SUM_LEN])
        assert str(raised.value) == (
            "no kind of defect fits these causes, kinds and modes (a defect of the graph "
            "extent needs Mode.GRAPH_REPLAY among the modes)"
        )

    @INVALID_CALL_CHECK
    @given(st.data())
    def test_without_a_replay_every_other_kind_is_drawn(self, data):
        invalid = data.draw(invalid_calls(modes=[Mode.SUM_LEN]))
        assert invalid.layout.mode is Mode.SUM_LEN
        assert "extent" not in invalid.kind

    @INVALID_CALL_CHECK
    @given(st.data(), st.integers(1, 8))
    def test_calls_derive_from_small_valid_layouts(self, data, max_count):
        invalid = data.draw(invalid_calls(max_count=max_count))
        assert all(count <= max_count for count in invalid.layout.counts)
        assert invalid.layout.dp_size <= 16

    @INVALID_CALL_CHECK
    @given(st.data())
    def test_counts_stay_within_1024_by_default(self, data):
        invalid = data.draw(invalid_calls())
        assert max(invalid.layout.counts) <= 1024

    def test_a_count_of_1024_is_drawn_by_default(self):
        found = find(
            invalid_calls(causes=[NegativeCountError]),
            lambda invalid: max(invalid.layout.counts) >= 1024,
        )
        assert max(found.layout.counts) == 1024

    @INVALID_CALL_CHECK
    @given(st.data())
    def test_negative_counts_stay_within_max_count(self, data):
        invalid = data.draw(invalid_calls(causes=[NegativeCountError], max_count=8))
        assert min(invalid.call.global_num_tokens_cpu) >= -8

    def test_skipped_gathers_are_drawn(self):
        found = find(
            invalid_calls(causes=[NegativeCountError]),
            lambda invalid: invalid.layout.gather_skipped,
        )
        assert len(found.call.global_num_tokens_cpu) == 1

    @INVALID_CALL_CHECK
    @given(st.data())
    def test_a_contracts_calls_derive_from_the_layouts_it_reaches(self, data):
        invalid = data.draw(invalid_calls(contract=VLLM_DP, max_count=4))
        layout = invalid.layout
        assert layout.mode in VLLM_DP.modes
        assert min(layout.counts) >= 1  # vLLM never gathers an empty rank
        assert layout.dp_size <= 16
        assert max(layout.counts) <= 4

    @INVALID_CALL_CHECK
    @given(st.data())
    def test_modes_narrow_a_contracts_calls(self, data):
        invalid = data.draw(invalid_calls(contract=SGLANG_CAPTURER, modes=[Mode.MAX_LEN]))
        assert invalid.layout.mode is Mode.MAX_LEN

    @INVALID_CALL_CHECK
    @given(st.data())
    def test_a_list_of_another_length_never_comes_from_a_skipped_gather(self, data):
        kinds = ["count list of another length"]
        invalid = data.draw(invalid_calls(contract=SGLANG_CAPTURER, kinds=kinds))
        assert not invalid.layout.gather_skipped

    @INVALID_CALL_CHECK
    @given(st.data())
    def test_a_chunking_contracts_calls_come_from_its_chunks(self, data):
        invalid = data.draw(invalid_calls(contract=VLLM_CHUNKED))
        assert invalid.layout.mode is Mode.DP_CHUNK

    def test_a_contracts_calls_come_from_up_to_16_ranks(self):
        find(invalid_calls(contract=VLLM_DP), lambda invalid: invalid.layout.dp_size == 16)
        with pytest.raises(NoSuchExample):
            find(
                invalid_calls(contract=VLLM_DP),
                lambda invalid: invalid.layout.dp_size > 16,
                settings=settings(max_examples=150, database=None),
            )

    def test_a_contract_that_skips_gathers_gives_calls_from_skipped_gathers(self):
        strategy = invalid_calls(contract=SGLANG_CAPTURER, kinds=["negative count"])
        find(strategy, lambda invalid: invalid.layout.gather_skipped)

    def test_one_strategy_keeps_each_kinds_values_apart(self):
        """Every kind of one strategy draws its own values, whatever the others drew
        (its layouts' DP sizes differ, and its strategies are built once)."""
        for invalid in _drawn(invalid_calls(max_count=8), examples=400):
            call, n, kind = invalid.call, invalid.layout.dp_size, invalid.kind
            counts = call.global_num_tokens_cpu
            if kind == "count list of another length":
                assert len(counts) not in (1, n)
            elif kind == "dp_rank out of range":
                assert not 0 <= call.dp_rank < n
            elif kind.startswith(("bool", "non-integer")):
                field = kind.split()[-1]
                if field == "count":
                    (value,) = [count for count in counts if type(count) is not int]
                else:
                    value = getattr(call, field)
                assert (type(value) is bool) is kind.startswith("bool"), (kind, value)
                assert value is not None or field != "graph_extent"

    @pytest.mark.parametrize("kind", ["count list of another length", "dp_rank out of range"])
    def test_one_strategy_fits_each_layouts_dp_size(self, kind):
        """The lengths and ranks of one strategy are those of each call's own DP size."""
        sizes = set()
        for invalid in _drawn(invalid_calls(kinds=[kind], max_count=8), examples=150):
            call, n = invalid.call, invalid.layout.dp_size
            sizes.add(n)
            if kind == "count list of another length":
                assert len(call.global_num_tokens_cpu) not in (1, n)
                assert len(call.global_num_tokens_cpu) <= n + 4
            else:
                assert n <= call.dp_rank <= n + 8 or -8 <= call.dp_rank <= -1
        assert len(sizes) > 3

    def test_shrinks_to_the_first_cause_on_a_one_rank_layout(self):
        found = find(invalid_calls(causes=INVALID_CAUSES[:3]), lambda invalid: True)
        assert found.expected is INVALID_CAUSES[0]
        assert found.layout == DPLayout((0,))


def _changed(invalid):
    """The fields of ``invalid.call`` that differ from the valid call it derives from.

    Counts are compared entry by entry; the valid call is the layout's call for
    whichever rank differs least (the rank itself may be the defect).
    """
    call, layout = invalid.call, invalid.layout
    best = None
    for valid in (layout.call(rank) for rank in range(layout.dp_size)):
        changed = {
            field: getattr(call, field)
            for field in ("dp_rank", "dp_size", "can_run_graph", "graph_extent")
            if not _same_value(getattr(call, field), getattr(valid, field))
        }
        counts, valid_counts = call.global_num_tokens_cpu, valid.global_num_tokens_cpu
        if isinstance(counts, list) and len(counts) == len(valid_counts):
            slots = [
                slot
                for slot, (got, want) in enumerate(zip(counts, valid_counts, strict=True))
                if not _same_value(got, want)
            ]
            if slots:
                changed["counts"] = slots
        elif not _same_value(counts, valid_counts):
            changed["counts"] = counts
        # The fewest changes; on a tie, one that leaves the counts as they were.
        if best is None or (len(changed), "counts" in changed) < (len(best), "counts" in best):
            best = changed
    return best


def _same_value(got, want):
    return type(got) is type(want) and got == want


class TestEachKindOfDefect:
    """Each kind puts exactly its own defect into the call, and names it."""

    @pytest.mark.parametrize("kind", DEFECT_KINDS)
    @settings(max_examples=max(10, settings.default.max_examples // 50))
    @given(data=st.data())
    def test_exactly_one_defect_named_as_it_is(self, kind, data):
        invalid = data.draw(invalid_calls(kinds=[kind], max_count=8))
        changed = _changed(invalid)
        call, n = invalid.call, invalid.layout.dp_size
        counts = call.global_num_tokens_cpu
        if kind == "counts None":
            assert (changed, invalid.defect) == (
                {"counts": None},
                "global_num_tokens_cpu is None",
            )
        elif kind == "count list of another length":
            assert list(changed) == ["counts"]
            assert len(counts) not in (1, n)
            assert 0 <= len(counts) <= n + 4
            valid = invalid.layout.call(call.dp_rank).global_num_tokens_cpu
            assert counts == [valid[index % n] for index in range(len(counts))]
            assert invalid.defect == f"{len(counts)} counts for dp_size={n}"
        elif kind == "dp_rank out of range":
            assert list(changed) == ["dp_rank"]
            assert n <= call.dp_rank <= n + 8 or -8 <= call.dp_rank <= -1
            assert invalid.defect == f"dp_rank = {call.dp_rank}"
        elif kind == "dp_size below 1":
            assert set(changed) <= {"dp_size", "dp_rank"}
            assert -4 <= call.dp_size <= 0
            assert call.dp_rank == 0
            assert invalid.defect == f"dp_size = {call.dp_size}"
        elif kind == "negative graph extent":
            assert list(changed) == ["graph_extent"]
            assert -8 <= call.graph_extent <= -1
            assert invalid.defect == f"graph_extent = {call.graph_extent}"
        elif kind == "tensor counts":
            assert isinstance(counts, torch.Tensor)
            assert counts.tolist() == invalid.layout.call(call.dp_rank).global_num_tokens_cpu
            assert invalid.defect == "a tensor as counts"
        elif kind == "tensor dp_rank":
            assert isinstance(call.dp_rank, torch.Tensor)
            assert call.dp_rank.dim() == 0
            assert list(changed) == ["dp_rank"]
            assert invalid.defect == "a tensor as dp_rank"
        else:  # one value replaced: a count, or the field the kind names
            field = "count" if "count" in kind.split() else kind.split()[-1]
            key = "counts" if field == "count" else field
            assert list(changed) == [key]
            if field == "count":
                (slot,) = changed["counts"]
                value = counts[slot]
            else:
                value = getattr(call, field)
            if kind == "count over the extent":
                assert call.graph_extent < value <= call.graph_extent + 8
                assert invalid.defect == f"count {value} over the extent"
            elif kind == "negative count":
                assert -8 <= value <= -1
                assert invalid.defect == f"count {value}"
            elif kind == "tensor count":
                assert isinstance(value, torch.Tensor)
                assert value.dim() == 0
                assert invalid.defect == "a tensor as count"
            else:
                assert type(value) is bool if kind.startswith("bool") else type(value) is not int
                assert invalid.defect == f"{field} is {value!r}"

    @pytest.mark.parametrize(
        ("kind", "value"),
        [
            ("dp_rank out of range", lambda call, n: call.dp_rank == n + 8),
            ("dp_rank out of range", lambda call, n: call.dp_rank == -8),
            ("dp_rank out of range", lambda call, n: call.dp_rank == n),
            ("dp_rank out of range", lambda call, n: call.dp_rank == -1),
            ("dp_size below 1", lambda call, n: call.dp_size == -4),
            ("dp_size below 1", lambda call, n: call.dp_size == 0),
            ("count list of another length", lambda call, n: not call.global_num_tokens_cpu),
            (
                "count list of another length",
                lambda call, n: len(call.global_num_tokens_cpu) == n + 4,
            ),
            ("negative graph extent", lambda call, n: call.graph_extent == -1),
            ("negative count", lambda call, n: -1 in call.global_num_tokens_cpu),
            (
                "count over the extent",
                lambda call, n: call.graph_extent + 1 in call.global_num_tokens_cpu,
            ),
            ("bool dp_rank", lambda call, n: call.dp_rank is True),
            ("bool dp_rank", lambda call, n: call.dp_rank is False),
        ],
        ids=["rank-top", "rank-bottom", "rank-dp-size", "rank-minus-1", "size-min", "size-0",
             "no-counts", "four-extra", "extent-minus-1", "count-minus-1", "one-over",
             "bool-true", "bool-false"],
    )  # fmt: skip
    def test_the_edges_of_each_range_are_drawn(self, kind, value):
        find(invalid_calls(kinds=[kind]), lambda bad: value(bad.call, bad.layout.dp_size))

    @pytest.mark.parametrize(
        ("kind", "beyond"),
        [
            ("dp_rank out of range", lambda call, n: call.dp_rank > n + 8),
            ("dp_rank out of range", lambda call, n: call.dp_rank < -8),
            ("dp_size below 1", lambda call, n: call.dp_size < -4),
            (
                "count list of another length",
                lambda call, n: len(call.global_num_tokens_cpu) > n + 4,
            ),
        ],
        ids=["rank-above", "rank-below", "size-below", "length-above"],
    )
    def test_nothing_beyond_the_edges_is_drawn(self, kind, beyond):
        search = settings(max_examples=150, database=None)
        with pytest.raises(NoSuchExample):
            find(
                invalid_calls(kinds=[kind]),
                lambda bad: beyond(bad.call, bad.layout.dp_size),
                settings=search,
            )


class TestNonIntegers:
    """The wrong-typed values a NonIntegerError call carries, drawn directly: through
    :func:`invalid_calls` each value would cost a layout."""

    @pytest.mark.parametrize("value", ["3", "0", None, b"1"], ids=["3", "0", "None", "b1"])
    def test_each_listed_value_is_drawn(self, value):
        # One draw in twelve is a given value: enough examples that even the dev
        # profile, which is not derandomized, never misses one.
        found = find(
            _non_integers(),
            lambda drawn: type(drawn) is type(value) and drawn == value,
            settings=settings(max_examples=500),
        )
        assert type(found) is type(value)
        assert found == value

    def test_floats_shrink_to_0(self):
        found = find(_non_integers(), lambda drawn: type(drawn) is float)
        assert found == 0.0

    def test_floats_are_finite_and_not_negative(self):
        with pytest.raises(NoSuchExample):
            find(
                _non_integers(),
                lambda drawn: type(drawn) is float and not (math.isfinite(drawn) and drawn >= 0),
                settings=settings(max_examples=200),
            )


MODES_HINT = (
    "must be a non-empty sequence of dpslice.Mode, e.g. modes=[Mode.SUM_LEN, Mode.GRAPH_REPLAY]"
)
CAUSES_HINT = "must be a non-empty sequence of errors from INVALID_CAUSES"

# strategy, its arguments, the whole message
INVALID_ARGUMENTS = [
    pytest.param(dp_sizes, {"min_size": 0}, "min_size=0 must be an int >= 1", id="dp_sizes-min-0"),
    pytest.param(dp_sizes, {"max_size": 0}, "max_size=0 must be an int >= 1", id="dp_sizes-max-0"),
    pytest.param(
        dp_sizes,
        {"min_size": 5, "max_size": 4},
        "min_size=5 > max_size=4; pass min_size <= max_size",
        id="dp_sizes-min-over-max",
    ),
    pytest.param(
        dp_sizes,
        {"min_size": 65},
        "min_size=65 > max_size=64; pass min_size <= max_size",
        id="dp_sizes-min-over-default-max",
    ),
    pytest.param(
        dp_sizes, {"min_size": 1.5}, "min_size=1.5 must be an int >= 1", id="dp_sizes-min-float"
    ),
    pytest.param(
        dp_sizes, {"max_size": True}, "max_size=True must be an int >= 1", id="dp_sizes-max-bool"
    ),
    pytest.param(
        token_counts,
        {"max_count": -1},
        "max_count=-1 must be an int >= 0",
        id="token_counts-max-count-negative",
    ),
    pytest.param(
        token_counts,
        {"max_count": True},
        "max_count=True must be an int >= 0",
        id="token_counts-max-count-bool",
    ),
    pytest.param(
        token_counts,
        {"min_size": 0},
        "min_size=0 must be an int >= 1",
        id="token_counts-min-size-0",
    ),
    pytest.param(
        token_counts,
        {"min_size": 3, "max_size": 2},
        "min_size=3 > max_size=2; pass min_size <= max_size",
        id="token_counts-min-over-max",
    ),
    pytest.param(
        token_counts,
        {"min_size": 65},
        "min_size=65 > max_size=64; pass min_size <= max_size",
        id="token_counts-min-over-default-max",
    ),
    pytest.param(dp_layouts, {"modes": []}, f"modes=[] {MODES_HINT}", id="dp_layouts-modes-empty"),
    pytest.param(
        dp_layouts,
        {"modes": Mode.SUM_LEN},
        f"modes={Mode.SUM_LEN!r} {MODES_HINT}",
        id="dp_layouts-modes-one-mode",
    ),
    pytest.param(
        dp_layouts,
        {"modes": {Mode.SUM_LEN}},
        f"modes={ {Mode.SUM_LEN}!r} {MODES_HINT}",
        id="dp_layouts-modes-a-set",
    ),
    pytest.param(
        dp_layouts,
        {"modes": ["sum_len"]},
        "modes holds 'sum_len'; every entry must be a dpslice.Mode",
        id="dp_layouts-modes-strings",
    ),
    pytest.param(
        dp_layouts,
        {"min_dp_size": 0},
        "min_dp_size=0 must be an int >= 1",
        id="dp_layouts-min-dp-size-0",
    ),
    pytest.param(
        dp_layouts,
        {"max_dp_size": 0},
        "max_dp_size=0 must be an int >= 1",
        id="dp_layouts-max-dp-size-0",
    ),
    pytest.param(
        dp_layouts,
        {"min_dp_size": 9, "max_dp_size": 8},
        "min_dp_size=9 > max_dp_size=8; pass min_dp_size <= max_dp_size",
        id="dp_layouts-min-over-max",
    ),
    pytest.param(
        dp_layouts,
        {"min_dp_size": 65},
        "min_dp_size=65 > max_dp_size=64; pass min_dp_size <= max_dp_size",
        id="dp_layouts-min-over-default-max",
    ),
    pytest.param(
        dp_layouts,
        {"max_count": -1},
        "max_count=-1 must be an int >= 0",
        id="dp_layouts-max-count-negative",
    ),
    pytest.param(
        dp_layouts,
        {"attn_tp_sizes": ()},
        "attn_tp_sizes=() must be a non-empty sequence",
        id="dp_layouts-attn-tp-empty",
    ),
    pytest.param(
        dp_layouts,
        {"attn_tp_sizes": 2},
        "attn_tp_sizes=2 must be a non-empty sequence",
        id="dp_layouts-attn-tp-int",
    ),
    pytest.param(
        dp_layouts,
        {"attn_tp_sizes": (2, 0)},
        "attn_tp_sizes entry=0 must be an int >= 1",
        id="dp_layouts-attn-tp-zero",
    ),
    pytest.param(
        dp_layouts,
        {"max_num_tokens_per_bs": 0},
        "max_num_tokens_per_bs=0 must be an int >= 1",
        id="dp_layouts-num-tokens-per-bs-0",
    ),
    pytest.param(
        dp_layouts,
        {"gather_skipped": "yes"},
        "gather_skipped='yes' must be True, False or None",
        id="dp_layouts-gather-skipped-str",
    ),
    pytest.param(
        dp_layouts,
        {"gather_skipped": True, "modes": [Mode.GRAPH_CAPTURE]},
        "gather_skipped=True with modes=[Mode.GRAPH_CAPTURE] draws nothing: capture has no CPU "
        "counts to skip; add an eager or replay mode",
        id="dp_layouts-skipped-capture-only",
    ),
    pytest.param(
        layouts_and_ranks,
        {"layouts": DPLayout((1,))},
        f"layouts={DPLayout((1,))!r} must be a strategy, e.g. dp_layouts(max_count=64)",
        id="layouts_and_ranks-a-layout",
    ),
    pytest.param(
        layouts_and_ranks,
        {"layouts": [DPLayout((1,))]},
        f"layouts={[DPLayout((1,))]!r} must be a strategy, e.g. dp_layouts(max_count=64)",
        id="layouts_and_ranks-a-list",
    ),
    pytest.param(
        invalid_calls, {"causes": []}, f"causes=[] {CAUSES_HINT}", id="invalid_calls-causes-empty"
    ),
    pytest.param(
        invalid_calls,
        {"causes": NegativeCountError},
        f"causes={NegativeCountError!r} {CAUSES_HINT}",
        id="invalid_calls-causes-one-class",
    ),
    pytest.param(
        invalid_calls,
        {"causes": {NegativeCountError}},
        f"causes={ {NegativeCountError}!r} {CAUSES_HINT}",
        id="invalid_calls-causes-a-set",
    ),
    pytest.param(
        invalid_calls,
        {"causes": [ValueError]},
        f"causes holds {ValueError!r}; choose from dpslice.strategies.INVALID_CAUSES",
        id="invalid_calls-causes-not-dpslice",
    ),
    pytest.param(
        invalid_calls,
        {"causes": [InvalidLayoutError]},
        f"causes holds {InvalidLayoutError!r}; choose from dpslice.strategies.INVALID_CAUSES",
        id="invalid_calls-causes-layout-error",
    ),
    pytest.param(
        invalid_calls,
        {"causes": [InvalidInputError]},
        f"causes holds {InvalidInputError!r}; choose from dpslice.strategies.INVALID_CAUSES",
        id="invalid_calls-causes-root",
    ),
    pytest.param(
        token_counts,
        {"min_count": -1},
        "min_count=-1 must be an int >= 0",
        id="token_counts-min-count-negative",
    ),
    pytest.param(
        token_counts,
        {"min_count": 3, "max_count": 2},
        "max_count=2 must be an int >= 3",
        id="token_counts-max-count-below-min-count",
    ),
    pytest.param(
        dp_layouts,
        {"min_count": -1},
        "min_count=-1 must be an int >= 0",
        id="dp_layouts-min-count-negative",
    ),
    pytest.param(
        invalid_calls,
        {"max_count": 0},
        "max_count=0 must be an int >= 1",
        id="invalid_calls-max-count-0",
    ),
    pytest.param(
        invalid_calls,
        {"contract": "vllm-dp"},
        "contract='vllm-dp' must be a dpslice.contracts.Contract",
        id="invalid_calls-contract-a-name",
    ),
    pytest.param(
        invalid_calls,
        {"modes": [Mode.GRAPH_CAPTURE]},
        "modes=[Mode.GRAPH_CAPTURE] has no CPU counts to put a defect in",
        id="invalid_calls-capture-only",
    ),
    pytest.param(
        invalid_calls,
        {"contract": VLLM_DP, "modes": [Mode.GRAPH_REPLAY]},
        "contract vllm-dp reaches none of the modes asked for; it reaches "
        + ", ".join(mode.name for mode in VLLM_DP.counted_modes),
        id="invalid_calls-no-mode-the-contract-reaches",
    ),
    pytest.param(
        invalid_calls,
        {"kinds": []},
        "kinds=[] must be a non-empty sequence of DEFECT_KINDS keys",
        id="invalid_calls-kinds-empty",
    ),
    pytest.param(
        invalid_calls,
        {"kinds": "negative count"},
        "kinds='negative count' must be a non-empty sequence of DEFECT_KINDS keys",
        id="invalid_calls-kinds-one-string",
    ),
    pytest.param(
        invalid_calls,
        {"kinds": {"negative count"}},
        "kinds={'negative count'} must be a non-empty sequence of DEFECT_KINDS keys",
        id="invalid_calls-kinds-a-set",
    ),
    pytest.param(
        invalid_calls,
        {"kinds": ["negative count", "nope"]},
        "kinds holds 'nope'; choose from dpslice.strategies.DEFECT_KINDS",
        id="invalid_calls-kinds-unknown",
    ),
]


class TestArgumentValidation:
    @pytest.mark.parametrize(("strategy", "kwargs", "message"), INVALID_ARGUMENTS)
    def test_raises_invalid_argument_with_a_hint(self, strategy, kwargs, message):
        with pytest.raises(InvalidArgument) as raised:
            strategy(**kwargs).validate()
        assert str(raised.value) == message
