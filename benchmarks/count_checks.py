"""Ways to check a list of token counts, timed: every count an exact int, none negative.

The reference's fast path (``dpslice/reference.py``) takes a count list only
when every count is an exact ``int`` >= 0, and it must look at each count's
type before anything that could call into it (a tensor's ``__lt__`` or
``__index__`` reads its value, which on CUDA waits for the GPU).  Each
candidate below makes that check, or a stricter one; this script confirms
each agrees with the fast path's loop on a few lists, then times them on the
benchmark counts (``layouts.py``) at DP 8 and 64, interleaved, the best of
many rounds, in ns per check, on the interpreter that runs it::

    python benchmarks/count_checks.py             # DP 8 and 64
    python benchmarks/count_checks.py --rounds 200

Two rows are no checks, timed as a scale: ``sum``, one C pass that checks
nothing, and what a cache of the last list checked would pay on a hit (the
same objects, compared one by one).  Does not import torch.
"""

from __future__ import annotations

import argparse
import marshal
import operator
import platform
import random
import sys
import timeit
from array import array
from collections.abc import Callable, Sequence

from layouts import bench_layout

from dpslice import Mode

_count_of = operator.countOf
_dumps = marshal.dumps
_INT = {int}


def loop(counts: list[int]) -> bool:
    """The reference's fast path: one bytecode loop, the type first."""
    kind, exact = type, int
    for count in counts:
        if kind(count) is not exact or count < 0:
            break
    else:
        return True
    return False


def all_generator(counts: list[int]) -> bool:
    return all(type(count) is int and count >= 0 for count in counts)


def map_type_min(counts: list[int]) -> bool:
    return _count_of(map(type, counts), int) == len(counts) and min(counts) >= 0


def set_of_types_min(counts: list[int]) -> bool:
    return {*map(type, counts)} == _INT and min(counts) >= 0


def map_type_array(counts: list[int]) -> bool:
    """Exact ints, then an unsigned array refuses a negative one."""
    if _count_of(map(type, counts), int) != len(counts):
        return False
    try:
        array("Q", counts)
    except OverflowError:
        return False
    return True


def marshalled(counts: list[int]) -> bool:
    """marshal writes an exact int of 32 bits as ``i`` and 4 bytes, little-endian.

    Every count is one iff every 5th byte is ``i`` and the length fits; the
    top byte of each is below 0x80 iff none is negative.  Larger ints, bools,
    subclasses and anything else fail (a tensor raises ValueError unread).
    """
    try:
        data = _dumps(counts, 2)
    except ValueError:
        return False
    return len(data) == 5 * len(counts) + 5 and not data[5::5].lstrip(b"i") and data[9::5].isascii()


CHECKS: dict[str, Callable[[list[int]], object]] = {
    "loop (the fast path)": loop,
    "all(generator)": all_generator,
    "countOf(map(type)) + min": map_type_min,
    "set(map(type)) + min": set_of_types_min,
    "countOf(map(type)) + array('Q')": map_type_array,
    "marshal.dumps + bytes": marshalled,
}


def _same_objects_as(last: list[int]) -> Callable[[list[int]], bool]:
    """What a cache of the last checked list must do to trust a list: same objects.

    A list is mutable, and ``==`` compares values (``True == 1``, and a tensor's
    ``__eq__`` reads it), so only identity, element by element, is safe.
    """
    snapshot = list(last)
    is_ = operator.is_

    def same_objects(counts: list[int]) -> bool:
        return len(counts) == len(snapshot) and all(map(is_, counts, snapshot))

    return same_objects


def scales(counts: list[int]) -> dict[str, Callable[[list[int]], object]]:
    """Passes over the counts that check nothing, timed beside the checks as a scale."""
    return {
        "sum (no check)": sum,
        "cache hit: the same objects as last call": _same_objects_as(counts),
    }


#: Lists the loop refuses; every candidate must refuse them too.
_REFUSED: list[list[object]] = [
    [1, -1],
    [1, True],
    [False, 1],
    [1, 2.0],
    [1, "2"],
    [1, None],
    [1, [2]],
]


def _agrees() -> None:
    for name, check in CHECKS.items():
        assert check([17, 0, 2**31 - 1]) is True, name
        for refused in _REFUSED:
            assert check(refused) is False, (name, refused)  # type: ignore[arg-type]


def time_checks(dp_size: int, rounds: int) -> dict[str, float]:
    """ns per check of each candidate on the benchmark counts of ``dp_size`` ranks."""
    counts = bench_layout(dp_size, Mode.SUM_LEN).call(dp_size - 1).global_num_tokens_cpu
    assert counts is not None
    candidates = {**CHECKS, **scales(counts)}
    timers = {
        name: timeit.Timer("check(counts)", globals={"check": check, "counts": counts})
        for name, check in candidates.items()
    }
    return best_of(timers, rounds)


def best_of(timers: dict[str, timeit.Timer], rounds: int, number: int = 2000) -> dict[str, float]:
    """ns per run of each timer, the best of ``rounds`` rounds of ``number`` runs, the
    timers taken in a new random order each round (no one always runs after another)."""
    best = dict.fromkeys(timers, float("inf"))
    order = list(timers)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            best[name] = min(best[name], timers[name].timeit(number) / number * 1e9)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="rounds per candidate (60)")
    parser.add_argument("--dp-sizes", type=int, nargs="+", default=[8, 64])
    args = parser.parse_args(argv)
    _agrees()
    timings = {dp_size: time_checks(dp_size, args.rounds) for dp_size in args.dp_sizes}
    print(f"ns per check, best of {args.rounds} rounds, Python {platform.python_version()}")
    print(f"| check | {' | '.join(f'DP {dp_size}' for dp_size in args.dp_sizes)} |")
    print(f"| --- |{' ---: |' * len(args.dp_sizes)}")
    for name in timings[args.dp_sizes[0]]:
        row = " | ".join(f"{timings[dp_size][name]:,.0f}" for dp_size in args.dp_sizes)
        print(f"| {name} | {row} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
