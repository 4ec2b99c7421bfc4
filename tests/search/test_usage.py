"""The device actors' idle time, split by reason, from the spans a run recorded."""

import pytest

from effvit_nas.search.usage import ANY_NODE, actor_idle, merged


def test_spans_merge_into_their_union():
    assert merged([(5, 6), (0, 2), (1, 3), (3, 4)]) == [(0, 4), (5, 6)]  # touching spans join
    assert merged([(2, 3), (0, 1), (0.5, 2.5)]) == [(0, 3)]


def test_idle_time_is_charged_to_the_end_then_to_proxies_on_the_node_then_to_orchestration():
    # actor 0 on node a: idle 4-5 (a proxy ran there 4-4.6) and 9-10 (after the last start, 5)
    # actor 1 on node b: idle 3-3.5 and 8-10; the proxy on a never held it up
    busy = {0: [(0, 4), (5, 9)], 1: [(0, 3), (3.5, 8)]}
    idle = actor_idle(busy, {0: "a", 1: "b"}, {"a": [(4, 4.6)]}, (0, 10), last_start=5)
    assert idle == pytest.approx({"end": 1 + 2, "proxy": 0.6, "other": 0.4 + 0.5})


def test_a_gap_across_the_last_start_is_split_and_unplaced_proxies_block_every_node():
    busy = {0: [(0, 4), (6, 10)], 1: [(0, 3)]}
    proxies = {ANY_NODE: [(3, 3.5)], "a": [(4, 5)]}
    idle = actor_idle(busy, {0: "a", 1: "b"}, proxies, (0, 10), last_start=6)
    # actor 0: 4-6 = proxy 4-5 (node a) + other 5-6; actor 1: 3-6 = proxy 3-3.5 + other 3.5-6, 6-10 end
    assert idle == pytest.approx({"end": 4, "proxy": 1 + 0.5, "other": 1 + 2.5})
    assert sum(idle.values()) == pytest.approx(2 * 10 - 8 - 3)  # every idle second is charged once
