"""The 2-D hypervolume on fronts whose area is known by hand; the non-dominated set in any
number of objectives."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from effvit_nas.trials.pareto import front_points, hypervolume_2d, non_dominated, on_front

FRONT = [(2.0, 1.0), (1.0, 2.0)]  # two 2x1 and 1x2 rectangles over (0, 0), overlapping in 1x1: area 3


def test_hypervolume_2d_of_known_fronts():
    assert hypervolume_2d(FRONT, (0, 0)) == pytest.approx(3.0)
    assert hypervolume_2d([(3, 2), (2, 3)], (1, 1)) == pytest.approx(3.0)  # the same shape moved: measured from ref
    assert hypervolume_2d([(3, 1), (2, 2), (1, 3)], (0, 0)) == pytest.approx(6.0)  # staircase 3 + 2 + 1
    assert hypervolume_2d([], (0, 0)) == 0.0


def test_a_dominated_point_or_one_not_beyond_the_reference_adds_nothing():
    assert hypervolume_2d([*FRONT, (1.0, 1.0), (1.5, 0.5)], (0, 0)) == pytest.approx(3.0)
    # better than the reference in one objective only: no area, never a negative one
    assert hypervolume_2d([*FRONT, (-1.0, 5.0), (5.0, -1.0)], (0, 0)) == pytest.approx(3.0)


def test_hypervolume_2d_does_not_depend_on_the_order_of_the_points():
    points = [(3, 1), (2, 2), (1, 3), (1.5, 0.5)]
    assert {hypervolume_2d(list(p), (0, 0)) for p in itertools.permutations(points)} == {6.0}


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=12))
def test_non_dominated_is_the_2d_front_in_two_objectives(points):
    # small integers: ties in one objective, and repeated points, are common
    assert non_dominated(points) == set(front_points(points))


def test_non_dominated_keeps_a_point_better_on_a_third_objective_only():
    # (proxy, throughput): (0.45, 700) is dominated by (0.5, 800); a second target's figure saves it
    assert non_dominated([(0.5, 800), (0.45, 700)]) == {(0.5, 800)}
    assert non_dominated([(0.5, 800, 400), (0.45, 700, 500), (0.4, 650, 385)]) == {(0.5, 800, 400), (0.45, 700, 500)}


def test_on_front_keeps_the_items_on_the_front_in_order_ties_included():
    items = [("a", 1, 3), ("b", 2, 2), ("c", 1, 1), ("d", 2, 2), ("e", 3, 0)]
    assert [i[0] for i in on_front(items, lambda i: (i[1], i[2]))] == ["a", "b", "d", "e"]
    assert on_front([], lambda i: (0.0, 0.0)) == []
