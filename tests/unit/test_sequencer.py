"""The node's per-channel sequencer: offset order, once each, holes reported and skippable."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from gateway.history import Publication
from gateway.node import _Sequencer


def _p(offset: int) -> Publication:
    return Publication("c", offset, "e", offset, datetime.now(timezone.utc))


def _offsets(pubs: list[Publication]) -> list[int]:
    return [p.offset for p in pubs]


def test_nothing_is_released_before_start_and_older_offsets_are_dropped():
    s = _Sequencer()
    assert s.push(_p(5)) == [] and s.push(_p(4)) == []
    assert _offsets(s.start(3)) == [4, 5]
    assert s.push(_p(3)) == [] and s.push(_p(5)) == []      # old news and a duplicate
    assert _offsets(s.push(_p(6))) == [6]


def test_out_of_order_is_held_until_the_hole_fills():
    s = _Sequencer()
    s.start(0)
    assert s.push(_p(3)) == [] and s.push(_p(2)) == []
    assert s.missing() == (1, 1)
    assert _offsets(s.push(_p(1))) == [1, 2, 3]
    assert s.missing() is None


def test_skip_to_gives_up_on_a_hole():
    s = _Sequencer()
    s.start(10)
    s.push(_p(14))
    assert s.missing() == (11, 13)
    assert _offsets(s.skip_to(14)) == [14]
    assert _offsets(s.push(_p(15))) == [15]


@given(st.permutations(list(range(1, 30))), st.lists(st.integers(1, 29), max_size=10))
def test_any_arrival_order_with_duplicates_comes_out_in_order_once(order, duplicates):
    s = _Sequencer()
    s.start(0)
    out = []
    for off in list(order) + duplicates:
        out += _offsets(s.push(_p(off)))
    assert out == list(range(1, 30))
