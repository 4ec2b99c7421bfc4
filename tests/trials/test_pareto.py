"""The 2-D hypervolume on fronts whose area is known by hand."""

import itertools

import pytest

from effvit_nas.trials.pareto import hypervolume_2d

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
